import Foundation
@testable import Platform
import Replication
import Testing
@testable import Remediate

/// The cost of idle databases (issue 14): per-database periodic work is
/// driven by the process's one ticker, an idle tick publishes nothing, a
/// health probe of an unchanged database opens no connection, and the
/// first integrity checks of databases started together are spread out.
@Suite(.serialized) struct IdleCostTests {
    final class Count: @unchecked Sendable {
        private let lock = NSLock()
        private var n = 0
        func add() { lock.withLock { n += 1 } }
        var value: Int { lock.withLock { n } }
    }

    /// Timers due within one resolution slot fire in one wake-up of the
    /// ticker's thread; a repeating timer fires at its interval until cancelled.
    @Test func tickerFiresTimersDueTogetherInOneWakeup() async throws {
        let ticker = Ticker(name: "test-tick", resolution: .milliseconds(200))
        let fired = Count()
        for _ in 0..<300 {
            ticker.schedule(after: .milliseconds(20)) {
                fired.add()
                return nil
            }
        }
        #expect(await TestSupport.waitUntil(timeout: .seconds(5)) { fired.value == 300 })
        #expect(ticker.counters.wakeups <= 2, "300 timers due together took \(ticker.counters.wakeups) wake-ups")
        #expect(ticker.count == 0, "one-shot timers are dropped once fired")

        let fine = Ticker(name: "test-tick-2", resolution: .milliseconds(10))
        let ticks = Count()
        let token = fine.schedule(after: .milliseconds(50)) {
            ticks.add()
            return .milliseconds(50)
        }
        #expect(await TestSupport.waitUntil(timeout: .seconds(5)) { ticks.value >= 5 })
        fine.cancel(token)
        let stopped = ticks.value
        try await Task.sleep(for: .milliseconds(200))
        #expect(ticks.value <= stopped + 1, "a cancelled timer stops")
        #expect(fine.count == 0)
    }

    /// A replication loop's idle tick (inotify active: every 5 s) still
    /// beats the watchdog's heartbeat, but publishes no status when nothing
    /// changed (the old tick published one per database every 5 s).
    @Test(.timeLimit(.minutes(1))) func idleTickBeatsAndPublishesNothing() async throws {
        let dir = try TestSupport.makeTempDir("idletick")
        defer { TestSupport.cleanup(dir) }
        let db = dir + "/app.db"
        try Damage.makeDatabase(db, rows: 10)
        let statuses = StatusCounter()
        let beats = Count()
        let config = DatabaseConfig(path: db, replicas: [ReplicaConfig(name: "file", target: .file(path: dir + "/replica"))])
        let service = ReplicationService(
            config: config, stateDir: dir + "/state", logger: RecordingLog().logger(),
            onStatus: { await statuses.add($0.state) }, heartbeat: { beats.add() })
        let timers = Ticker.shared.count
        let task = Task { try await service.run() }
        defer { task.cancel() }
        #expect(await TestSupport.waitUntil { await statuses.count("open") > 0 })
        // A commit is published (and runs the loop once, which beats).
        let opened = await statuses.count("open")
        let writer = try SQLiteConnection(path: db)
        try writer.query("INSERT INTO items(body) VALUES (?)", [.text("new")])
        #expect(await TestSupport.waitUntil { await statuses.count("open") > opened && beats.value > 0 })
        #expect(Ticker.shared.count > timers, "the loop's tick is a timer of the shared ticker")
        // The first tick after it publishes what the replica did since (its
        // new position); the one after that beats and publishes nothing.
        let first = beats.value
        #expect(await TestSupport.waitUntil(timeout: .seconds(8)) { beats.value > first })
        let published = await statuses.count("open")
        let beaten = beats.value
        #expect(await TestSupport.waitUntil(timeout: .seconds(8)) { beats.value > beaten })
        let after = await statuses.count("open")
        #expect(after == published, "an idle tick published \(after - published) unchanged statuses")
        task.cancel()
        _ = await task.result
    }

    /// The health probe of a database whose files did not change since a
    /// clean sample opens no SQLite connection (an idle database costs a few
    /// stats); a commit makes the next probe connect again.
    @Test func healthProbeOfAnUnchangedDatabaseOpensNoConnection() async throws {
        let dir = try TestSupport.makeTempDir("idleprobe")
        defer { TestSupport.cleanup(dir) }
        let db = dir + "/app.db"
        try Damage.makeDatabase(db, rows: 10)
        let first = await BlockingPool.shared.run { CheckpointSample.take(path: db, previous: nil, checkpoint: true) }
        #expect(first.connected)
        #expect(first.error == nil)
        let again = await BlockingPool.shared.run { CheckpointSample.take(path: db, previous: first.files, checkpoint: true, last: first) }
        #expect(!again.connected, "nothing changed: no connection")
        #expect(again.files == first.files)
        let writer = try SQLiteConnection(path: db)
        writer.persistWAL()
        try writer.execute("PRAGMA wal_autocheckpoint=0")
        try writer.query("INSERT INTO items(body) VALUES (?)", [.text("new")])
        let changed = await BlockingPool.shared.run { CheckpointSample.take(path: db, previous: again.files, checkpoint: true, last: first) }
        #expect(changed.connected, "the WAL changed: the probe connects and checkpoints")
        #expect(changed.result != nil)
        // A suspect database is not connected to at all, and the next sample connects.
        let suspect = await BlockingPool.shared.run { CheckpointSample.take(path: db, previous: changed.files, checkpoint: false, last: changed) }
        #expect(!suspect.connected && suspect.result == nil)
    }

    /// A quiet database's health ticks are answered on the ticker's thread
    /// (no probe, no hop); a commit makes the next tick probe (the status
    /// shows the WAL it left), and once checkpointed the database is quiet
    /// again. Every thirtieth tick probes whatever happens.
    @Test(.timeLimit(.minutes(1))) func aQuietDatabasesHealthTicksNeedNoProbe() async throws {
        try await withWorld(rows: 20) { w in
            var config = w.config(mode: .alertOnly)
            config.integrityInterval = .seconds(3600)
            let statuses = StatusLog()
            let (svc, _) = w.service(config: config, onStatus: { await statuses.add($0) })
            let gate = svc.remediator.healthGate
            let task = Task { try await svc.run() }
            defer { task.cancel() }
            // 200 ms ticks: answered ones follow the first quiet probe.
            #expect(await TestSupport.waitUntil(timeout: .seconds(10)) { gate.answeredCount >= 4 })
            let probesBefore = await statuses.all.count
            let answered = gate.answeredCount
            // A tick every 200 ms; one in thirty probes (and may publish).
            try await Task.sleep(for: .milliseconds(1300))
            #expect(gate.answeredCount >= answered + 3, "quiet ticks answered: \(gate.answeredCount - answered)")
            #expect(await statuses.all.count <= probesBefore + 2)

            let writer = try SQLiteConnection(path: w.db)
            writer.persistWAL()
            try writer.execute("PRAGMA wal_autocheckpoint=0")
            try writer.query("INSERT INTO items(body, at) VALUES (?, 0)", [.text("new")])
            var st = stat()
            #expect(stat(w.db + "-wal", &st) == 0)
            let wal = Int64(st.st_size)
            #expect(wal > 0)
            // The next tick probes: the status shows the WAL and a checkpoint of it.
            #expect(await TestSupport.waitUntil(timeout: .seconds(3)) {
                await statuses.last?.checkpoint.map { $0.walSize == wal && $0.lastResult?.logFrames ?? 0 > 0 } == true
            })
            let again = gate.answeredCount
            #expect(await TestSupport.waitUntil(timeout: .seconds(5)) { gate.answeredCount > again + 2 }, "quiet again once checkpointed")
            task.cancel()
            _ = await task.result
        }
    }

    /// The first integrity checks of databases started together are one
    /// `spacing` apart (not all at once), a lone database waits nothing
    /// extra, and none waits more than its interval.
    @Test func firstIntegrityChecksAreSpaced() {
        let slots = IntegritySlots()
        let delays = (0..<5).map { _ in slots.firstDelay(after: .seconds(10), within: .seconds(300)) }
        #expect(delays[0] < .milliseconds(50))
        for i in 1..<5 {
            let gap = delays[i] - delays[i - 1]
            #expect(gap > .milliseconds(90) && gap <= .milliseconds(100), "gap \(gap)")
        }
        let capped = (0..<10).map { _ in slots.firstDelay(after: .seconds(10), within: .milliseconds(250)) }
        #expect(capped.allSatisfy { $0 <= .milliseconds(250) })
    }
}
