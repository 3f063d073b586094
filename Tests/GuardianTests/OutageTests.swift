import Foundation
@testable import Platform
import Replication
import Testing
@testable import Remediate
@testable import guardian

/// Outages guardian could cause itself (issue 18): the watchdog killing it
/// during legitimate long work, the app left stopped by a reload or stop
/// mid-incident, a replica that cannot be reached keeping guardian from
/// being ready or from stopping, threads left behind by every reload.
@Suite(.serialized) struct OutageTests {
    /// The longest silence between two WATCHDOG=1 pings after `from`, up to now.
    static func longestGap(_ pings: [ContinuousClock.Instant], from: ContinuousClock.Instant) -> Duration {
        var last = from
        var worst = Duration.zero
        for p in pings where p > from {
            worst = max(worst, p - last)
            last = p
        }
        return max(worst, ContinuousClock.now - last)
    }

    /// A TCP endpoint that accepts connections (the kernel does) and never answers.
    static func silentEndpoint() throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let port = TestSupport.freePort()
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0, listen(fd, 64) == 0 else { throw TestFailure("listen on \(port): \(errno)") }
        return (fd, port)
    }

    // MARK: - Item 12: S3 without credentials, S3 that cannot be reached

    @Test func s3WithoutCredentialsIsAConfigError() async throws {
        let dir = try TestSupport.makeTempDir("nocreds")
        defer { TestSupport.cleanup(dir) }
        try TestSupport.write("""
            dbs:
              - path: \(dir)/app.db
                replicas:
                  - type: s3
                    bucket: b
                    path: app
                    endpoint: http://127.0.0.1:9

            """, to: dir + "/g.yml")
        let env = ["AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "LITESTREAM_ACCESS_KEY_ID": "", "LITESTREAM_SECRET_ACCESS_KEY": ""]
        let check = try await guardian(["check-config", "--config", dir + "/g.yml"], environment: env)
        #expect(check.status != 0, "\(check.stdout)")
        #expect(check.stderr.contains("g.yml:4: dbs[0].replicas[0]: no credentials: set access-key-id/secret-access-key or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"), "\(check.stderr)")
        // From the environment, it is accepted (and not printed).
        let withEnv = try await guardian(["check-config", "--config", dir + "/g.yml"], environment: ["AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t-env-value"])
        #expect(withEnv.status == 0, "\(withEnv.stderr)")
        #expect(!withEnv.stdout.contains("s3cr3t-env-value"))
    }

    /// A replica that accepts connections and never answers: guardian is
    /// ready at once (protecting what it can), the watchdog keeps being fed
    /// while the replica's requests hang, and SIGTERM stops it in seconds.
    @Test(.timeLimit(.minutes(2)))
    func silentReplicaDoesNotHoldUpReadinessWatchdogOrStop() async throws {
        let f = try await DaemonTests.Fixture()
        defer { TestSupport.cleanup(f.dir) }
        let silent = try Self.silentEndpoint()
        defer { close(silent.fd) }
        try TestSupport.write("""
            status:
              socket: \(f.socket)
            state-dir: \(f.dir)/state
            dbs:
              - path: \(f.db)
                monitor-interval: 100ms
                replicas:
                  - type: file
                    path: \(f.dir)/replica
                  - type: s3
                    bucket: b
                    path: app
                    endpoint: http://127.0.0.1:\(silent.port)
                    access-key-id: AKIAEXAMPLE
                    secret-access-key: example-secret

            """, to: f.config)
        let receiver = try NotifyReceiver(path: f.dir + "/notify.sock")
        defer { receiver.close() }
        let child = try ChildProcess.start(
            TestSupport.guardianBinary, ["run", "--config", f.config, "--log-target", "stderr"],
            environment: ["NOTIFY_SOCKET": receiver.path, "WATCHDOG_USEC": "2000000"])
        defer { child.removeFiles(); child.signal(SIGKILL) }
        let ready = await TestSupport.waitUntil(timeout: .seconds(5)) { receiver.messages.contains { $0.contains("READY=1") } }
        #expect(ready, "no READY with a silent replica: \(receiver.messages); \(child.stderr)")
        // The S3 replica's first request hangs (30 s stall timeout): the
        // database's loop is busy finding the replicas' positions all along.
        let from = ContinuousClock.now
        try await Task.sleep(for: .seconds(6))
        let gap = Self.longestGap(receiver.watchdogPings, from: from)
        #expect(gap < .milliseconds(1800), "watchdog silent for \(gap): \(receiver.messages.suffix(5)); \(child.stderr)")
        let stopAt = ContinuousClock.now
        child.signal(SIGTERM)
        let status = await child.wait(timeout: .seconds(30))
        let took = ContinuousClock.now - stopAt
        #expect(status == 0, "\(child.stderr)")
        #expect(took < .seconds(6), "SIGTERM took \(took): \(child.stderr)")
        #expect(!child.stderr.contains("Cancellation took longer"), "\(child.stderr)")
    }

    // MARK: - Item 13: one thread per reload

    @Test(.timeLimit(.minutes(3)))
    func reloadsLeaveNoThreadBehind() async throws {
        let f = try await DaemonTests.Fixture()
        defer { TestSupport.cleanup(f.dir) }
        try TestSupport.write("""
            status:
              socket: \(f.socket)
            state-dir: \(f.dir)/state
            dbs:
              - path: \(f.db)
                monitor-interval: 100ms
                replicas:
                  - type: file
                    path: \(f.dir)/replica

            """, to: f.config)
        let receiver = try NotifyReceiver(path: f.dir + "/notify.sock")
        defer { receiver.close() }
        let child = try ChildProcess.start(
            TestSupport.guardianBinary, ["run", "--config", f.config, "--log-target", "stderr"],
            environment: ["NOTIFY_SOCKET": receiver.path])
        defer { child.removeFiles(); child.signal(SIGKILL) }
        func readies() -> Int { receiver.messages.filter { $0.contains("READY=1") }.count }
        func reload() async -> Bool {
            let before = readies()
            child.signal(SIGHUP)
            return await TestSupport.waitUntil(timeout: .seconds(30)) { readies() > before }
        }
        func threads() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(child.pid)/task").count) ?? -1 }
        #expect(await TestSupport.waitUntil { readies() == 1 }, "\(child.stderr)")
        #expect(await reload(), "\(child.stderr)")
        try await Task.sleep(for: .milliseconds(500))
        let before = threads()
        for _ in 1...6 { #expect(await reload(), "\(child.stderr)") }
        try await Task.sleep(for: .milliseconds(500))
        let after = threads()
        #expect(before > 0 && after <= before + 2, "threads: \(before) before six reloads, \(after) after")
        child.signal(SIGTERM)
        #expect(await child.wait() == 0)
    }

    /// Every remediation pause ends a replication session and starts a new
    /// one (a new replicator): none may leave its thread behind.
    @Test(.timeLimit(.minutes(2)))
    func pausesLeaveNoThreadBehind() async throws {
        let dir = try TestSupport.makeTempDir("pausethreads")
        defer { TestSupport.cleanup(dir) }
        let db = dir + "/app.db"
        try Damage.makeDatabase(db, rows: 100)
        let control = ReplicationControl()
        let statuses = StatusCounter()
        let config = DatabaseConfig(path: db, replicas: [ReplicaConfig(name: "file", target: .file(path: dir + "/replica"))], monitorInterval: .milliseconds(50))
        let service = ReplicationService(config: config, stateDir: dir + "/state", logger: RecordingLog().logger(), onStatus: { await statuses.add($0.state) }, control: control)
        let task = Task { try await service.run() }
        func threads() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? -1 }
        func descriptors() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1 }
        func cycle() async -> Bool {
            let opened = await statuses.count("open")
            await control.pause(db)
            await control.resume(db)
            return await TestSupport.waitUntil(timeout: .seconds(10)) { await statuses.count("open") > opened }
        }
        #expect(await TestSupport.waitUntil { await statuses.count("open") > 0 })
        #expect(await cycle())
        try await Task.sleep(for: .milliseconds(300))
        let before = threads()
        let fdsBefore = descriptors()
        for _ in 1...5 { #expect(await cycle()) }
        try await Task.sleep(for: .milliseconds(300))
        let after = threads()
        let fdsAfter = descriptors()
        task.cancel()
        _ = await task.result
        #expect(before > 0 && after <= before + 3, "threads: \(before) before five pauses, \(after) after")
        // Nor a connection or descriptor (each session closes what it opened).
        #expect(fdsBefore > 0 && fdsAfter <= fdsBefore + 3, "descriptors: \(fdsBefore) before five pauses, \(fdsAfter) after")
    }

    // MARK: - Item 9: the watchdog during long work

    /// Beats go on while known long work runs, for `limit` at most: work
    /// that outlasts it counts as hung again.
    @Test func longWorkBeatsForItsLimitOnly() async throws {
        let beats = StatusCounter()
        let start = ContinuousClock.now
        try await Heartbeat.whileWorking(every: .milliseconds(100), limit: .milliseconds(1000), beat: { await beats.add("beat") }) {
            try await Task.sleep(for: .milliseconds(2500))
        }
        let count = await beats.count("beat")
        let last = await beats.lastAt
        #expect((7...10).contains(count), "\(count) beats in a 1 s limit")
        if let last { #expect(last - start < .milliseconds(1300), "a beat \(last - start) after the start, past the limit") }
        // A loop that stopped beating is stale; one that beats is not.
        let board = StatusBoard(configPath: "-", databasePaths: [])
        await board.beat("hung")
        try await Task.sleep(for: .milliseconds(300))
        await board.beat("alive")
        #expect(await board.staleLoops(limit: .milliseconds(200)) == ["hung"])
    }
}

/// A real daemon guarding a real app (RemediationWorld's scripts) with a
/// file replica guardian writes itself, and a verify query that takes a few
/// seconds: the incident spends them with the app stopped and replication paused.
final class IncidentDaemon: @unchecked Sendable {
    static let slowVerify = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000000) SELECT count(*) FROM c"
    let w: RemediationWorld
    let config: String
    let receiver: NotifyReceiver
    private(set) var child: ChildProcess

    init(label: String) async throws {
        w = try RemediationWorld(label: label, rows: 20_000)
        config = w.dir + "/guardian.yml"
        func list(_ argv: [String]) -> String { "[" + argv.map { "\"\($0)\"" }.joined(separator: ", ") + "]" }
        try TestSupport.write("""
            status:
              socket: \(w.dir)/guardian.sock
            state-dir: \(w.stateDir)
            dbs:
              - path: \(w.db)
                monitor-interval: 100ms
                replicas:
                  - type: file
                    path: \(w.replica)
                remediate: auto
                stop-command: \(list(w.stopCommand))
                start-command: \(list(w.startCommand))
                status-command: \(list(w.statusCommand))
                stop-timeout: 15s
                start-timeout: 15s
                integrity-interval: 300ms
                integrity-budget: 5s
                confirm-budget: 60s
                health-interval: 200ms
                verify: ["\(Self.slowVerify)"]

            """, to: config)
        receiver = try NotifyReceiver(path: w.dir + "/notify.sock")
        child = try Self.spawn(config: config, receiver: receiver)
    }

    static func spawn(config: String, receiver: NotifyReceiver) throws -> ChildProcess {
        try ChildProcess.start(
            TestSupport.guardianBinary, ["run", "--config", config, "--log-target", "stderr"],
            environment: ["NOTIFY_SOCKET": receiver.path, "WATCHDOG_USEC": "2000000"])
    }

    /// guardian again (after a kill), on the same files.
    func restart() throws {
        child.removeFiles()
        child = try Self.spawn(config: config, receiver: receiver)
    }

    var readies: Int { receiver.messages.filter { $0.contains("READY=1") }.count }

    /// The app runs and serves, guardian is ready and has replicated it; then pages are damaged.
    func startAndDamage() async throws {
        try await w.startApp()
        guard await TestSupport.waitUntil(timeout: .seconds(15), { self.readies >= 1 }) else { throw TestFailure("no READY: \(child.stderr)") }
        let replicated = await TestSupport.waitUntil(timeout: .seconds(15)) {
            ((try? FileManager.default.contentsOfDirectory(atPath: self.w.replica + "/ltx/0")) ?? []).count >= 3
        }
        guard replicated else { throw TestFailure("guardian did not replicate: \(child.stderr)") }
        try await Task.sleep(for: .milliseconds(300))
        try Damage.overwritePages(w.db, count: 6)
    }

    /// Waits until guardian logged the incident step `name`.
    func reached(_ name: String, timeout: Duration = .seconds(60)) async -> Bool {
        let field = name.contains(" ") ? "step=\"\(name)\"" : "step=\(name)"
        return await TestSupport.waitUntil(timeout: timeout) { self.child.stderr.contains(field) }
    }

    func incident() async throws -> IncidentRecord? {
        let store = StateStore(stateDir: w.stateDir)
        let r = try await store.incidents().first
        await store.close()
        return r
    }

    func stop() async {
        child.signal(SIGTERM)
        _ = await child.wait(timeout: .seconds(30))
        child.signal(SIGKILL)
        child.removeFiles()
        receiver.close()
        await w.cleanup()
    }
}

extension OutageTests {
    /// Item 9: while the database is paused for a repair (its replication
    /// loop waits), WATCHDOG=1 keeps coming; the repair ends resolved.
    @Test(.timeLimit(.minutes(3)))
    func watchdogKeepsBeingFedWhileARepairPausesTheDatabase() async throws {
        let d = try await IncidentDaemon(label: "wdpause")
        do {
            try await d.startAndDamage()
            #expect(await d.reached(IncidentStepName.release), "\(d.child.stderr)")
            let from = ContinuousClock.now
            #expect(await TestSupport.waitUntil(timeout: .seconds(60)) { (try? await d.incident())?.outcome == .resolvedAutomatically }, "\(d.child.stderr)")
            let gap = OutageTests.longestGap(d.receiver.watchdogPings, from: from)
            #expect(ContinuousClock.now - from > .seconds(3), "the repair was too quick to tell")
            #expect(gap < .milliseconds(1800), "watchdog silent for \(gap) during the repair (WatchdogSec 2 s): systemd would kill guardian")
            #expect(await d.w.appIsUp())
            let r = try await d.incident()
            #expect(r?.outcome == .resolvedAutomatically, "\(describe(r))")
        } catch {
            await d.stop()
            throw error
        }
        await d.stop()
    }

    /// Item 13: a SIGHUP while the app is stopped for a repair: the reload
    /// waits for the repair, the app runs afterwards, the timeline says so.
    @Test(.timeLimit(.minutes(3)))
    func reloadDuringARepairFinishesItFirst() async throws {
        let d = try await IncidentDaemon(label: "hupincident")
        do {
            try await d.startAndDamage()
            #expect(await d.reached(IncidentStepName.restore), "\(d.child.stderr)")
            #expect(!(await d.w.appIsUp()), "the app is stopped during the repair")
            d.child.signal(SIGHUP)
            #expect(await TestSupport.waitUntil(timeout: .seconds(60)) { d.readies >= 2 }, "no READY after the reload: \(d.child.stderr)")
            #expect(await TestSupport.waitUntil(timeout: .seconds(20)) { await d.w.appIsUp() }, "the app was left stopped: \(d.child.stderr)")
            let r = try await d.incident()
            #expect(r?.outcome == .resolvedAutomatically, "\(describe(r))")
            #expect(r?.steps.contains { $0.step == IncidentStepName.note && $0.detail.contains("configuration reload requested: guardian finishes this incident first") } == true, "\(describe(r))")
            #expect(r?.steps.last?.step == IncidentStepName.resolved, "\(describe(r))")
        } catch {
            await d.stop()
            throw error
        }
        await d.stop()
    }

    /// Item 13: a SIGTERM while the app is stopped for a repair: the repair
    /// finishes within the stop budget and the app runs afterwards.
    @Test(.timeLimit(.minutes(3)))
    func stopDuringARepairFinishesItWithinTheBudget() async throws {
        let d = try await IncidentDaemon(label: "termincident")
        do {
            try await d.startAndDamage()
            #expect(await d.reached(IncidentStepName.restore), "\(d.child.stderr)")
            let at = ContinuousClock.now
            d.child.signal(SIGTERM)
            let status = await d.child.wait(timeout: .seconds(30))
            #expect(status == 0, "\(d.child.stderr)")
            #expect(ContinuousClock.now - at < .seconds(20))
            #expect(await d.w.appIsUp(), "the app was left stopped: \(d.child.stderr)")
            let r = try await d.incident()
            #expect(r?.outcome == .resolvedAutomatically, "\(describe(r))")
        } catch {
            await d.stop()
            throw error
        }
        await d.stop()
    }

    /// Item 13: guardian killed while the app is stopped and the damaged
    /// files are quarantined: the next guardian picks the incident up from
    /// the state database and finishes the repair; the timeline says so.
    @Test(.timeLimit(.minutes(3)))
    func killedDuringARepairTheNextGuardianFinishesIt() async throws {
        let d = try await IncidentDaemon(label: "killincident")
        do {
            try await d.startAndDamage()
            #expect(await d.reached(IncidentStepName.restore), "\(d.child.stderr)")
            d.child.signal(SIGKILL)
            _ = await d.child.wait(timeout: .seconds(10))
            #expect(!FileManager.default.fileExists(atPath: d.w.db), "the damaged database is in quarantine")
            #expect(!(await d.w.appIsUp()))
            try d.restart()
            #expect(await TestSupport.waitUntil(timeout: .seconds(60)) { await d.w.appIsUp() }, "the app was left stopped: \(d.child.stderr)")
            #expect(await TestSupport.waitUntil(timeout: .seconds(30)) { (try? await d.incident())?.outcome == .resolvedAutomatically }, "\(d.child.stderr)")
            let r = try await d.incident()
            #expect(r?.outcome == .resolvedAutomatically, "\(describe(r))")
            #expect(r?.steps.contains { $0.step == IncidentStepName.note && $0.detail.contains("guardian restarted while the incident was in phase") && $0.detail.contains("the repair goes on (restore)") } == true, "\(describe(r))")
            let live = try SQLiteConnection(path: d.w.db, mode: .readOnly)
            #expect(try live.scalar("PRAGMA integrity_check") == .text("ok"))
        } catch {
            await d.stop()
            throw error
        }
        await d.stop()
    }
}

extension OutageTests {
    /// Item 13: a verification that runs past its budget is no verdict: it
    /// is tried again with more time, then the copy is kept and the incident
    /// escalated as inconclusive — a good copy is never discarded as corrupt.
    @Test(.timeLimit(.minutes(3)))
    func verifyPastItsBudgetKeepsTheCopyAndEscalatesAsInconclusive() async throws {
        try await withWorld(rows: 60_000) { w in
            try await w.startApp()
            try await w.startReplication()
            try await Task.sleep(for: .milliseconds(300))
            await w.stopApp()
            await w.stopReplication()
            try SQLiteConnection(path: w.db).execute("PRAGMA wal_checkpoint(TRUNCATE)")
            try Damage.destroyHeader(w.db)
            var config = w.config()
            config.integrityInterval = .seconds(3600)  // the header probe finds it
            config.confirmBudget = .milliseconds(1)  // far too little for integrity_check of a 13 MB copy
            let (svc, store) = w.service(config: config)
            let done = await runService(svc) { (try? await store.incidents().first)?.outcome == .escalated }
            let incident = try #require(try await store.incidents().first)
            #expect(done, "\(describe(incident))")
            #expect(incident.escalation?.contains("could not be verified in time") == true, "\(describe(incident))")
            #expect(incident.steps.contains { $0.step == IncidentStepName.note && $0.detail.contains("trying again with 4x the time") }, "\(describe(incident))")
            #expect(!incident.steps.contains { $0.step == IncidentStepName.discard }, "\(describe(incident))")
            let copy = Quarantine.restorePath(for: w.db, incident: incident.id, attempt: 0)
            #expect(FileManager.default.fileExists(atPath: copy), "the copy was discarded")
            // The kept copy is good: a check given the time says so.
            let c = try SQLiteConnection(path: copy, mode: .readOnly)
            #expect(try c.scalar("PRAGMA integrity_check") == .text("ok"))
        }
    }
}

extension OutageTests {
    /// Item 13: guardian stopping while a repair cannot finish in time (its
    /// budget already spent when the app is stopped): the long steps are not
    /// started, the quarantined files go back, the app is started again and
    /// the timeline says why.
    @Test(.timeLimit(.minutes(2)))
    func stopPastTheBudgetPutsTheFilesBackAndStartsTheApp() async throws {
        try await withWorld(rows: 5_000) { w in
            try await w.startApp()
            try await w.startReplication()
            try await Task.sleep(for: .milliseconds(300))
            var config = w.config()
            config.startTimeout = .seconds(3)
            let store = StateStore(stateDir: w.stateDir)
            let alerter = Alerter(destinations: [], transport: HTTPAlertTransport(), store: store, logger: w.log.logger(), host: "test-host")
            let box = RemediatorBox()
            // guardian is told to stop right when the app is down for the repair.
            let hooks = RemediationHooks(pause: { _ in
                await w.stopReplication()
                await box.windDownNow()
            })
            let svc = RemediationService(
                database: w.db, config: config, store: store, alerter: alerter, ownsAlerter: true,
                app: RemediationService.appController(for: config), source: ReplicaRestoreSource(replicas: [ReplicaConfig(name: "file", target: .file(path: w.replica))]),
                hooks: hooks, logger: w.log.logger(), onStatus: { _ in })
            await box.set(svc.remediator)
            try Damage.overwritePages(w.db, count: 6)
            let done = await runService(svc) { (try? await store.incidents().first)?.outcome == .escalated }
            let incident = try #require(try await store.incidents().first)
            #expect(done, "\(describe(incident))")
            let steps = incident.steps.map(\.step)
            #expect(steps.contains(IncidentStepName.quarantine) && !steps.contains(IncidentStepName.restore), "\(describe(incident))")
            #expect(incident.steps.contains { $0.step == IncidentStepName.putBack && $0.outcome == .ok && $0.detail.contains("guardian is stopping") }, "\(describe(incident))")
            #expect(incident.steps.contains { $0.step == IncidentStepName.startApp && $0.detail.contains("guardian is stopping") }, "\(describe(incident))")
            #expect(incident.escalation?.contains("guardian was stopping while the incident was in phase") == true, "\(describe(incident))")
            #expect(FileManager.default.fileExists(atPath: w.db), "the damaged files are back in place")
            #expect(w.commands.map { $0.split(separator: " ").first.map(String.init) ?? "" }.suffix(2) == ["stop", "start"], "\(w.commands)")
        }
    }
}

extension OutageTests {
    /// The machine's new edges: a repair taken up after a restart, a stop
    /// that cannot wait, a verification with no verdict (nothing discarded).
    @Test func machineResumesStopsAndKeepsAnInconclusiveCopy() {
        let policy = IncidentMachine.Policy(mode: .auto, cooldown: .seconds(600), maxRestoreAttempts: 2)
        var m = IncidentMachine(policy: policy)
        #expect(m.resume(at: .restore) == [.planRestore])
        #expect(m.phase == .restoring)
        #expect(m.handle(.restorePlanned(candidates: 2, problems: "")) == [.restore(attempt: 0)])
        #expect(m.handle(.restored) == [.verify(attempt: 0)])
        #expect(m.handle(.verifyInconclusive("out of time")) == [.escalate(.verifyInconclusive("out of time"), restartApp: false)])
        #expect(m.phase == .escalated)
        #expect(m.stopping() == [], "nothing to stop once escalated")

        var n = IncidentMachine(policy: policy)
        #expect(n.resume(at: .stopApp) == [.stopApp])
        #expect(n.stopping() == [.escalate(.stopped(phase: "stopping-app"), restartApp: false)])
        var o = IncidentMachine(policy: policy)
        #expect(o.resume(at: .startApp) == [.startApp])
        #expect(o.handle(.appStarted(at: Date())) == [.resolve(byOperator: false)])
    }
}

actor RemediatorBox {
    private var remediator: Remediator?
    func set(_ r: Remediator) { remediator = r }
    func windDownNow() async { await remediator?.windDown(deadline: .now) }
}

actor StatusCounter {
    private var seen: [String: Int] = [:]
    private(set) var lastAt: ContinuousClock.Instant?
    func add(_ s: String) {
        seen[s, default: 0] += 1
        lastAt = .now
    }
    func count(_ s: String) -> Int { seen[s] ?? 0 }
}
