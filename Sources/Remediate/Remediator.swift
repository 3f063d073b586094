import CSQLite
import Foundation
import Synchronization
import Logging
import Platform
import Replication

/// Hooks into the rest of the daemon around the moment the database file is
/// replaced. The replicator holds connections (and a read transaction) on
/// the database; before the files are moved it must let go, and afterwards
/// it must open the new file (and snapshot it, as a new WAL generation).
public struct RemediationHooks: Sendable {
    /// Called once the app is stopped, before guardian checks that no
    /// process holds the files and moves them away.
    public var pause: @Sendable (_ database: String) async -> Void
    /// Called when guardian is done touching the files (after the swap, or
    /// after a failure), with the restored TXID when a copy was put in place.
    public var resume: @Sendable (_ database: String, _ restoredTXID: UInt64?) async -> Void

    public init(
        pause: @escaping @Sendable (String) async -> Void = { _ in },
        resume: @escaping @Sendable (String, UInt64?) async -> Void = { _, _ in }
    ) {
        self.pause = pause
        self.resume = resume
    }

    public static let none = RemediationHooks()
}

/// Executes the incident machine's actions for one database, records every
/// step (timestamped) in guardian's state database and the journal, and
/// alerts. Also runs the periodic health and integrity checks that feed it.
public actor Remediator {
    public nonisolated let database: String
    let config: RemediationConfig
    let store: StateStore
    let alerter: Alerter
    let app: (any AppController)?
    let source: any RestoreSource
    let hooks: RemediationHooks
    let logger: Logger
    let onStatus: @Sendable (HealthStatus) async -> Void

    private var machine: IncidentMachine
    private var assessor: CheckpointAssessor
    private var integrity = IntegrityHealth()
    private var cursor = IntegrityCursor()
    private var lastProbe: FileProbe?
    /// The last health sample that connected (see `CheckpointSample.take`).
    private var lastSample: CheckpointSample?
    /// File problems (by kind) that `integrity_check` found harmless: a full
    /// disk leaves a partial frame at the WAL's end, or a checkpoint stopped
    /// short. They raise no new suspicion while they stay the same.
    private var clearedFileProblems: Set<String>?
    private var activeConditions: [String: HealthCondition] = [:]
    private var record: IncidentRecord?
    private var lastClosed: IncidentRecord?
    /// Incidents opened since this remediator started (for the metrics).
    private var incidentsOpened = 0
    private var stepSeq = 0
    private var plan: CandidatePlan?
    private var ownership: FileOwnership?
    private var paused = false
    private var confirmation: [String] = []
    private var confirmedAt: Date?
    private var storeWarned = false
    private var started = false
    // What the replicator reports about the app's last commit.
    private var localTXID: UInt64?
    private var localCommitAt: Date?
    private var lagging: Set<String> = []
    /// Set when guardian is stopping: long steps not started by then are not started.
    private var stopDeadline: ContinuousClock.Instant?
    private var idleWaiters: [CheckedContinuation<Void, Never>] = []

    public init(
        database: String, config: RemediationConfig, store: StateStore, alerter: Alerter, app: (any AppController)?,
        source: any RestoreSource, hooks: RemediationHooks, logger: Logger,
        onStatus: @escaping @Sendable (HealthStatus) async -> Void
    ) {
        self.database = database
        healthGate = HealthGate(path: database)
        self.config = config
        self.store = store
        self.alerter = alerter
        self.app = app
        self.source = source
        self.hooks = hooks
        self.logger = logger
        self.onStatus = onStatus
        machine = IncidentMachine(policy: .init(mode: config.effectiveMode, cooldown: config.cooldown, maxRestoreAttempts: config.maxRestoreAttempts))
        (reported, reportedInput) = AsyncStream<Suspicion>.makeStream(bufferingPolicy: .bufferingNewest(8))
        assessor = CheckpointAssessor(walWarnSize: config.walWarnSize, walCriticalSize: config.walCriticalSize, starvation: config.checkpointStarvation)
    }

    public var phase: IncidentPhase { machine.phase }

    /// How many databases of this process were found without a way to stop
    /// the application (`remediationLimited`), and how many are said at warning level.
    static let limitedWarnings = Atomic<Int>(0)
    static let limitedWarningsShown = 5

    // MARK: - Start-up

    /// Loads what the state database remembers: the last automatic
    /// remediation (for the cooldown) and an incident left open.
    public func start() async {
        guard !started else { return }
        started = true
        if config.mode == .auto, config.appControl == .none {
            // Said for the first few databases; a directory of thousands
            // without a unit template would otherwise log it thousands of times.
            let n = Self.limitedWarnings.add(1, ordering: .relaxed).newValue
            if n <= Self.limitedWarningsShown {
                var meta: Logger.Metadata = ["db": "\(database)"]
                if n == Self.limitedWarningsShown { meta["note"] = "further databases in the same case are logged at debug level" }
                logger.event(.remediationLimited, level: .warning, meta)
            } else {
                logger.event(.remediationLimited, level: .debug, ["db": "\(database)"])
            }
        }
        let past = (try? await store.incidents(database: database, limit: 50)) ?? []
        if let last = past.first(where: { $0.outcome == .resolvedAutomatically }), let closed = last.closedAt {
            machine = IncidentMachine(policy: machine.policy, lastResolvedAt: closed)
        }
        lastClosed = past.first { $0.closedAt != nil }
        if let open = past.first(where: { $0.outcome == .open || $0.outcome == .escalated }) {
            record = open
            stepSeq = open.steps.map(\.seq).max() ?? 0
            if let point = resumePoint(open) {
                // A repair cut short (guardian killed, or stopped past its
                // budget): go on with it rather than leave the app stopped.
                logger.event(.incidentInterrupted, level: .error, ["db": "\(database)", "incident": "\(open.id)", "phase": "\(open.phase.rawValue)"])
                await step(IncidentStepName.note, .info, "guardian restarted while the incident was in phase \(open.phase.rawValue): the repair goes on (\(point))")
                if point != .startApp {
                    await hooks.pause(database)
                    paused = true
                }
                await drive(actions: machine.resume(at: point))
                return
            }
            let actions = machine.adopt(openIncidentIn: open.phase)
            if !actions.isEmpty {
                logger.event(.incidentInterrupted, level: .error, ["db": "\(database)", "incident": "\(open.id)", "phase": "\(open.phase.rawValue)"])
            }
            for a in actions { _ = await execute(a) }
            // Killed between stopping the app and starting it again: put back
            // what was moved and start the app, rather than leave it down.
            if !actions.isEmpty { await putBackAndStartApp(why: "guardian restarted in the middle of the repair") }
        }
    }

    // MARK: - Reloads and stops during an incident

    /// Where an incident found open at start-up can go on from, if it can:
    /// automatic mode, a repair under way, the app stopped by it.
    private func resumePoint(_ r: IncidentRecord) -> IncidentMachine.ResumePoint? {
        guard config.effectiveMode == .auto, app != nil, r.outcome == .open else { return nil }
        switch r.phase {
        case .stoppingApp, .quarantining, .restoring, .verifying, .swapping, .startingApp: break
        default: return nil
        }
        let ok = { (name: String) in r.steps.contains { $0.step == name && $0.outcome == .ok } }
        // Only a repair that got as far as stopping the app is taken up again;
        // before that nothing was touched (the escalation says so).
        guard ok(IncidentStepName.stopApp) else { return nil }
        if ok(IncidentStepName.swap) { return .startApp }
        if ok(IncidentStepName.quarantine) {
            // Restore only where the database is gone (a file that appeared meanwhile is not ours to replace).
            return FileManager.default.fileExists(atPath: database) ? nil : .restore
        }
        return .stopApp
    }

    /// A repair is under way (between the suspicion and its end).
    public var isRepairing: Bool { !machine.phase.isTerminal && machine.phase != .resolved }

    /// Returns once no repair is under way (a reload waits for it), or after
    /// `timeout`. Notes in the incident's timeline that the reload waited.
    public func waitUntilIdle(timeout: Duration, reason: String) async {
        guard isRepairing else { return }
        await step(IncidentStepName.note, .info, "\(reason): guardian finishes this incident first")
        let deadline = ContinuousClock.now + timeout
        while isRepairing, ContinuousClock.now < deadline, !Task.isCancelled {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await self.waitForIdleSignal() }
                group.addTask { try? await Task.sleep(until: deadline, clock: .continuous) }
                await group.next()
                group.cancelAll()
                self.releaseIdleWaiters()
            }
        }
    }

    private func waitForIdleSignal() async {
        guard isRepairing else { return }
        await withCheckedContinuation { idleWaiters.append($0) }
    }

    private func releaseIdleWaiters() {
        let waiters = idleWaiters
        idleWaiters.removeAll()
        for w in waiters { w.resume() }
    }

    /// guardian is stopping: a step that may take long (planning and running
    /// a restore, verifying it) is not started after `deadline`; the repair is abandoned
    /// instead, the damaged files put back and the app started again.
    public func windDown(deadline: ContinuousClock.Instant) {
        stopDeadline = deadline
    }

    private func isLong(_ action: IncidentMachine.Action) -> Bool {
        switch action {
        // The quarantine is a rename on the same filesystem: not among them.
        case .planRestore, .restore, .verify: true
        default: false
        }
    }

    /// The app was stopped by this incident and not started again since.
    private var appLeftStopped: Bool {
        guard let steps = record?.steps else { return false }
        guard let stopped = steps.lastIndex(where: { $0.step == IncidentStepName.stopApp && $0.outcome == .ok }) else { return false }
        return !steps[stopped...].contains { $0.step == IncidentStepName.startApp && $0.outcome == .ok }
    }

    /// Undoes a repair that cannot go on: moves the quarantined files back
    /// (unless a verified copy was put in place), resumes replication and
    /// starts the app, each recorded in the timeline.
    private func putBackAndStartApp(why: String) async {
        guard record != nil, appLeftStopped else { return }
        let swapped = record?.steps.contains { $0.step == IncidentStepName.swap && $0.outcome == .ok } ?? false
        let moved = record?.quarantined ?? []
        if !swapped, !moved.isEmpty {
            let start = Date()
            let result = await BlockingPool.shared.run { () -> String? in
                do {
                    // Refuses to overwrite a file that appeared meanwhile.
                    for f in moved { try Quarantine.moveFile(f.quarantined, to: f.original) }
                    return nil
                } catch {
                    return "\(error)"
                }
            }
            if let result {
                await step(IncidentStepName.putBack, .failed, "\(why): \(result); the app stays stopped", at: start, ended: Date())
                await resumeReplication()
                await save()
                return
            }
            await step(IncidentStepName.putBack, .ok, "\(why): moved \(moved.count) file\(moved.count == 1 ? "" : "s") back from \(record?.quarantineDir ?? "quarantine")", at: start, ended: Date())
        }
        await resumeReplication()
        if let app {
            let start = Date()
            do {
                let active = try await app.start(timeout: config.startTimeout)
                await step(IncidentStepName.startApp, .ok, "\(app.description): started again (\(why))\(swapped ? "" : " on the damaged database")", at: start, ended: active)
            } catch {
                await step(IncidentStepName.startApp, .failed, "\(app.description): \(error) (\(why))", at: start, ended: Date())
            }
        }
        await save()
    }

    /// Also after a restart, when nothing is paused in this process (harmless then).
    private func resumeReplication() async {
        paused = false
        await hooks.resume(database, nil)
    }

    // MARK: - Inputs from the rest of guardian

    /// Replication status (from the replication service): the app's last
    /// commit as guardian saw it (for the measured RPO) and replica lag.
    static let failuresBeforeLagAlert = 3

    public func observe(replication s: DatabaseStatus) async {
        if let hex = s.txid, let txid = UInt64(hex, radix: 16) { localTXID = txid }
        if let t = s.lastCommit.flatMap(Timestamps.parse) { localCommitAt = t }
        guard let limit = config.lagAlert else { return }
        for r in s.replicas {
            let key = alerter.key(database: database, kind: "replication-lag-\(r.name)")
            // Lag over the limit, or a replica that keeps failing (one retried
            // error is not worth a page).
            if r.lagMs > limit.milliseconds || (r.state == "Failing" && r.consecutiveFailures >= Self.failuresBeforeLagAlert) {
                if lagging.insert(r.name).inserted {
                    await alerter.trigger(
                        key: key, severity: .warning,
                        summary: "Replica \(r.name) of \(database) is \(r.state == "Failing" ? "failing" : "lagging") (\(r.lagMs) ms behind)",
                        database: database, details: ["replica": r.destination, "lag_ms": "\(r.lagMs)", "error": r.error ?? "-"])
                }
            } else if lagging.remove(r.name) != nil {
                await alerter.resolve(key: key, summary: "Replica \(r.name) of \(database) caught up")
            }
        }
    }

    /// An SQLite error seen by another part of guardian on this database.
    /// Returns at once: a corruption error is handed to the service's loop
    /// (`reported`), which confirms it and runs the incident.
    public func report(sqliteError e: SQLiteFailure, at: Date = Date()) {
        assessor.note(sqliteCode: e.code, at: at)
        if e.isCorrupt, config.mode != .off {
            reportedInput.yield(Suspicion(source: .sqliteError, detail: e.description, at: at))
        }
    }

    /// Suspicions reported from outside, for the service's loop.
    public nonisolated let reported: AsyncStream<Suspicion>
    private let reportedInput: AsyncStream<Suspicion>.Continuation

    /// Runs a suspicion raised from outside to its end (confirmation, and the incident if any).
    public func suspect(_ s: Suspicion) async {
        guard config.mode != .off else { return }
        await drive(.suspicion(s))
    }

    // MARK: - Periodic checks

    /// Header/WAL sanity and checkpoint health. A file problem is re-read
    /// once after 200 ms before it counts (SQLite writes a frame in two
    /// steps, so a WAL can be seen mid-append).
    public func healthTick() async {
        let path = database
        let prev = lastProbe
        let last = lastSample
        let suspectDB = machine.phase != .healthy && machine.phase != .resolved
        var sample = await BlockingPool.shared.run {
            CheckpointSample.take(path: path, previous: prev, checkpoint: !suspectDB, last: last)
        }
        lastSample = sample.connected || sample.stamp == nil ? sample : last
        if !sample.files.problems.isEmpty {
            try? await Task.sleep(for: .milliseconds(200))
            let again = await BlockingPool.shared.run { FileProbe.read(path: path, previous: prev) }
            let kinds = Set(again.problems.map(\.kind))
            sample.files.problems = sample.files.problems.filter { kinds.contains($0.kind) }
            if sample.files.problems.isEmpty { sample.files = again }
        }
        lastProbe = sample.files
        let (checkpoint, conditions) = assessor.record(sample)
        await updateConditions(conditions)
        let fileProblems = Set(sample.files.problems.map(\.kind))
        if fileProblems.isEmpty { clearedFileProblems = nil }
        let cleared = !fileProblems.isEmpty && fileProblems == clearedFileProblems
        integrity.files = sample.files.problems.isEmpty || cleared ? "ok" : sample.files.problems.map(\.description).joined(separator: "; ")
        if !sample.files.dbExists {
            integrity.state = "missing"
        } else if integrity.state == "missing" {
            integrity.state = "unchecked"
        }
        if config.mode != .off, sample.files.dbExists {
            if let p = sample.files.problems.first {
                if !cleared {
                    // A hint, not a verdict: integrity_check decides.
                    await drive(.suspicion(Suspicion(source: p.concernsWAL ? .wal : .header, detail: p.description, at: sample.at)))
                    if machine.phase == .healthy, integrity.state == "ok" {
                        clearedFileProblems = fileProblems
                        integrity.files = "ok"
                    }
                }
            } else if let e = sample.error, e.isCorrupt {
                await drive(.suspicion(Suspicion(source: .sqliteError, detail: e.description, at: sample.at)))
            }
        }
        let quiet = machine.phase == .healthy && conditions.isEmpty && fileProblems.isEmpty && sample.error == nil
            && assessor.lastFull == nil && assessor.lastIOError == nil && !checkpoint.starved
            && (sample.files.walSize == 0 || checkpoint.lastResult.map { !$0.busy && $0.logFrames == $0.checkpointedFrames } == true)
        healthGate.set(quietWith: quiet ? sample.stamp : nil)
        await publish()
    }

    /// See `HealthGate`: cleared by anything that moves the incident machine.
    public nonisolated let healthGate: HealthGate

    /// The scheduled `quick_check` on its budget.
    public func integrityTick() async {
        guard config.mode != .off else { return }
        let path = database
        guard await BlockingPool.shared.run({ FileManager.default.fileExists(atPath: path) }) else {
            integrity.state = "missing"
            await publish()
            return
        }
        let budget = config.integrityBudget
        let maxBudget = max(config.integrityBudget, config.confirmBudget)
        let before = cursor
        let (outcome, newCursor) = await RemediatePool.shared.run { () -> (QuickCheckOutcome, IntegrityCursor) in
            var c = before
            let o = IntegrityChecker.quickCheck(path: path, budget: budget, maxBudget: maxBudget, cursor: &c)
            return (o, c)
        }
        cursor = newCursor
        let now = Date()
        integrity.lastCheckAt = Timestamps.iso8601(now)
        integrity.lastCheckMs = outcome.duration.milliseconds
        integrity.perTable = cursor.perTable
        if let code = outcome.sqliteCode { assessor.note(sqliteCode: code, at: now) }
        switch outcome.verdict {
        case .ok:
            if outcome.completedPass { integrity.lastCompletePassAt = Timestamps.iso8601(now) }
            if outcome.stoppedAtBudget {
                logger.event(.integrityCheckIncomplete, level: .debug, ["db": "\(database)", "tables": "\(outcome.tablesChecked.count)", "budget_ms": "\(budget.milliseconds)"])
            } else {
                logger.event(.integrityCheckPassed, level: .debug, ["db": "\(database)", "duration_ms": "\(outcome.duration.milliseconds)"])
            }
            if integrity.state != "suspect" { integrity.state = "ok" }
            integrity.detail = nil
            await alerter.resolve(key: alerter.key(database: database, kind: "integrity-inconclusive"))
            if outcome.completedPass, machine.phase == .escalated || machine.phase == .awaitingOperator {
                await drive(.healthyAgain(at: now))
            }
        case .corrupt(let lines):
            integrity.detail = lines.prefix(3).joined(separator: "; ")
            await drive(.suspicion(Suspicion(source: .quickCheck, detail: lines.prefix(3).joined(separator: "; "), at: now)))
        case .inconclusive(let why):
            integrity.detail = why
            if outcome.stoppedAtBudget {
                logger.event(.integrityCheckIncomplete, level: .warning, ["db": "\(database)", "detail": "\(why)"])
            }
        }
        await publish()
    }

    private func updateConditions(_ conditions: [HealthCondition]) async {
        let now = Dictionary(conditions.map { ($0.kind, $0) }, uniquingKeysWith: { a, _ in a })
        for (kind, c) in now where activeConditions[kind] != c {
            if activeConditions[kind]?.severity != c.severity {
                logger.event(.healthWarning, level: c.severity == .critical ? .error : .warning, ["db": "\(database)", "condition": "\(kind)", "detail": "\(c.text)"])
                try? await store.log("health-\(kind)", level: c.severity.rawValue, database: database, detail: c.text)
            }
            await alerter.trigger(key: alerter.key(database: database, kind: kind), severity: c.severity, summary: "\(database): \(c.text)", database: database)
        }
        for (kind, c) in activeConditions where now[kind] == nil {
            logger.event(.healthRecovered, ["db": "\(database)", "condition": "\(kind)"])
            try? await store.log("health-\(kind)-cleared", database: database, detail: c.text)
            await alerter.resolve(key: alerter.key(database: database, kind: kind), summary: "\(database): \(kind) back to normal")
        }
        activeConditions = now
    }

    /// Resolves health alerts of this database triggered before a restart
    /// whose condition no longer holds.
    public func reconcileAlerts() async {
        let healthKinds = ["wal-size", "checkpoint-starvation", "sqlite-full", "sqlite-ioerr", "db-disk-full", "integrity-inconclusive"]
        for key in await alerter.triggeredKeys(database: database) {
            let kind = AlertPayloads.kind(of: key)
            if healthKinds.contains(kind), activeConditions[kind] == nil {
                await alerter.resolve(key: key, summary: "\(database): \(kind) back to normal")
            }
        }
    }

    // MARK: - The incident loop

    /// Feeds an event to the machine and executes what it decides, feeding
    /// each action's outcome back, until nothing is left to do. Terminates:
    /// every action yields at most one event and the machine only moves forward.
    func drive(_ first: IncidentMachine.Event) async {
        healthGate.set(quietWith: nil)
        await drive(actions: machine.handle(first))
    }

    /// Executes `initial` and what the outcomes lead to.
    func drive(actions initial: [IncidentMachine.Action]) async {
        var actions = initial
        var queue: [IncidentMachine.Event] = []
        while true {
            for action in actions {
                if let deadline = stopDeadline, ContinuousClock.now >= deadline, isLong(action), appLeftStopped {
                    // guardian is stopping and this step may take long: undo instead.
                    await putBackAndStartApp(why: "guardian is stopping")
                    for a in machine.stopping() { _ = await execute(a) }
                    queue.removeAll()
                    break
                }
                if let next = await execute(action) { queue.append(next) }
            }
            await publish()
            guard !queue.isEmpty else { break }
            actions = machine.handle(queue.removeFirst())
        }
        if !isRepairing { releaseIdleWaiters() }
    }

    private func execute(_ action: IncidentMachine.Action) async -> IncidentMachine.Event? {
        switch action {
        case .confirm:
            return await confirm()
        case .clearSuspicion(let detail):
            integrity.state = "ok"
            logger.event(.suspicionCleared, ["db": "\(database)", "detail": "\(detail)"])
            try? await store.log("suspicion-cleared", database: database, detail: detail)
            return nil
        case .warnInconclusive(let detail):
            integrity.state = "inconclusive"
            integrity.detail = detail
            logger.event(.integrityCheckIncomplete, level: .warning, ["db": "\(database)", "detail": "\(detail)"])
            try? await store.log("confirmation-inconclusive", level: "warning", database: database, detail: detail)
            await alerter.trigger(
                key: alerter.key(database: database, kind: "integrity-inconclusive"), severity: .warning,
                summary: "\(database) may be corrupt; integrity_check could not decide: \(detail)", database: database)
            return nil
        case .openIncident(let remediating):
            await openIncident(remediating: remediating)
            return nil
        case .stopApp:
            return await stopApp()
        case .quarantine:
            return await quarantine()
        case .planRestore:
            return await planRestore()
        case .restore(let attempt):
            return await restore(attempt: attempt)
        case .verify(let attempt):
            return await verify(attempt: attempt)
        case .discardCopy(let attempt):
            let path = Quarantine.restorePath(for: database, incident: record?.id ?? 0, attempt: attempt)
            await BlockingPool.shared.run { Quarantine.discard(path) }
            await step(IncidentStepName.discard, .info, "attempt \(attempt + 1) removed (the replica still holds it)")
            return nil
        case .swap:
            return await swap()
        case .startApp:
            return await startApp()
        case .resolve(let byOperator):
            await resolve(byOperator: byOperator)
            return nil
        case .escalate(let reason, let restartApp):
            await escalate(reason, restartApp: restartApp)
            return nil
        case .ignored(let what):
            logger.debug("incident event ignored", metadata: ["db": "\(database)", "what": "\(what)"])
            return nil
        }
    }

    private func confirm() async -> IncidentMachine.Event {
        integrity.state = "suspect"
        let detail = machine.suspicion?.detail ?? "-"
        logger.event(.corruptionSuspected, level: .warning, ["db": "\(database)", "source": "\(machine.suspicion?.source.rawValue ?? "-")", "detail": "\(detail)"])
        try? await store.log("suspicion", level: "warning", database: database, detail: "\(machine.suspicion?.source.rawValue ?? "-"): \(detail)")
        await publish()
        let path = database
        let budget = config.confirmBudget
        let (verdict, code) = await RemediatePool.shared.run { IntegrityChecker.confirm(path: path, budget: budget) }
        if let code { assessor.note(sqliteCode: code, at: Date()) }
        switch verdict {
        case .ok:
            return .notConfirmed(detail: "integrity_check ok (suspicion: \(detail))")
        case .inconclusive(let why):
            // A database that vanished is not corruption; anything else unreadable is not a verdict.
            return .inconclusive(detail: why)
        case .corrupt(let lines):
            confirmation = lines
            integrity.state = "corrupt"
            integrity.detail = lines.prefix(3).joined(separator: "; ")
            let at = Date()
            confirmedAt = at
            logger.event(.integrityCheckFailed, level: .error, ["db": "\(database)", "detail": "\(lines.prefix(3).joined(separator: "; "))"])
            return .confirmed(detail: lines.first ?? "corrupt", at: at)
        }
    }

    private func gatherEvidence() async -> Evidence {
        let dir = (database as NSString).deletingLastPathComponent
        let fs = await BlockingPool.shared.run { () -> (Int64, Int64, Int64)? in
            var s = statvfs()
            guard statvfs(dir, &s) == 0 else { return nil }
            return (Int64(s.f_bavail) * Int64(s.f_frsize), Int64(s.f_blocks) * Int64(s.f_frsize), Int64(s.f_favail))
        }
        // What the disk guardian logged for this database's filesystem in
        // the hour before (the daemon's DiskAlertBridge writes it).
        let since = (machine.suspicion?.at ?? Date()).addingTimeInterval(-3600)
        let logged = ((try? await store.events(database: database, limit: 200)) ?? [])
            .filter { $0.kind.hasPrefix("disk-") && $0.at >= since }
            .sorted { $0.at < $1.at }
        let disk = logged.suffix(20).map { Evidence.DiskNote(at: $0.at, level: $0.level, text: $0.detail) }
        let emergency = logged.first { $0.kind == "disk-ballastReleased" || $0.detail.contains("to=emergency") }?.at
        let health = assessor.current
        let header = lastProbe?.problems.first { !$0.concernsWAL }
        let wal = lastProbe?.problems.first { $0.concernsWAL }
        var headerText = header?.description
        if headerText == nil, let s = machine.suspicion, s.source == .header { headerText = s.detail }
        var walText = wal?.description
        if walText == nil, let s = machine.suspicion, s.source == .wal { walText = s.detail }
        if walText == nil {
            let walPath = database + "-wal"
            walText = await BlockingPool.shared.run { WALScan.damage(walPath: walPath) }
        }
        // SQLITE_NOTADB with a sane header: SQLite gave up on the WAL.
        if headerText == nil, walText == nil, (lastProbe?.walSize ?? 0) > 0,
            confirmation.contains(where: { $0.contains("not a database") || $0.contains("NOTADB") })
        {
            walText = "SQLite reports SQLITE_NOTADB although the database header is sane: the WAL (\(Units.formatBytes(lastProbe?.walSize ?? 0))) is damaged"
        }
        return Evidence(
            sqliteFullSeenAt: assessor.lastFull, ioErrorSeenAt: assessor.lastIOError, diskFreeBytes: fs?.0, diskTotalBytes: fs?.1,
            diskFreeInodes: fs?.2, walSize: health?.walSize ?? lastProbe?.walSize, walCriticalSize: config.walCriticalSize,
            checkpointStarved: health?.starved ?? false, secondsSinceCompleteCheckpoint: health?.secondsSinceComplete,
            headerProblem: headerText, walProblem: walText, checkLines: confirmation,
            diskEvents: disk.isEmpty ? nil : disk, diskEmergencyAt: emergency)
    }

    private func openIncident(remediating: Bool) async {
        let suspicion = machine.suspicion ?? Suspicion(source: .external, detail: "-", at: Date())
        let evidence = await gatherEvidence()
        var r = IncidentRecord(
            id: 0, database: database, host: alerter.host, mode: config.effectiveMode.rawValue, detectedAt: suspicion.at,
            confirmedAt: confirmedAt ?? Date(), suspicion: suspicion, confirmation: confirmation, evidence: evidence,
            checkIntervalSeconds: min(config.integrityInterval.seconds, config.checkpointInterval.seconds))
        r.lastLocalTXID = localTXID
        r.lastLocalCommitAt = localCommitAt
        do {
            r.id = try await store.createIncident(r)
        } catch {
            storeFailed(error)
            r.id = Int64(Date().timeIntervalSince1970 * 1000)
        }
        record = r
        incidentsOpened += 1
        stepSeq = 0
        plan = nil
        ownership = nil
        logger.event(.incidentOpened, level: .error, ["db": "\(database)", "incident": "\(r.id)", "cause": "\(r.cause.rawValue)", "remediating": "\(remediating)"])
        await step(IncidentStepName.detected, .info, "\(suspicion.source.rawValue): \(suspicion.detail)", at: suspicion.at)
        await step(IncidentStepName.confirmed, .info, "integrity_check: \(confirmation.prefix(2).joined(separator: "; ")); cause classified as \(r.cause.title)", at: r.confirmedAt)
        if remediating {
            await alert(severity: .warning, summary: "\(r.headline): guardian is restoring it (incident \(r.id))")
        }
        await save()
    }

    private func alert(severity: AlertSeverity, summary: String) async {
        guard let r = record else { return }
        let sent = await alerter.trigger(
            key: alerter.key(database: database, kind: "incident-\(r.id)"), severity: severity, summary: summary, database: database, incident: r.id,
            details: ["cause": r.cause.title, "phase": machine.phase.rawValue, "postmortem": "guardian incidents show \(r.id)"])
        if sent, !alerter.destinations.isEmpty {
            await step(IncidentStepName.alert, .ok, "\(severity.rawValue) alert to \(alerter.destinations.count) destination\(alerter.destinations.count == 1 ? "" : "s"): \(summary)")
        }
    }

    private func stopApp() async -> IncidentMachine.Event {
        guard let app else { return .appStopFailed("no way to stop the app is configured") }
        let start = Date()
        if let shortfall = await roomShortfall() {
            await step(IncidentStepName.stopApp, .failed, "not stopped: \(shortfall)", at: start, ended: Date())
            return .noRoom(shortfall)
        }
        do {
            try await app.stop(timeout: config.stopTimeout)
        } catch {
            await step(IncidentStepName.stopApp, .failed, "\(app.description): \(error)", at: start, ended: Date())
            return .appStopFailed("\(error)")
        }
        let stopped = Date()
        record?.appStoppedAt = stopped
        await step(IncidentStepName.stopApp, .ok, app.description, at: start, ended: stopped)
        // guardian's own replicator lets go of the files too.
        await hooks.pause(database)
        paused = true
        // Nobody may keep writing to what is about to be quarantined.
        let paths = Quarantine.suffixes.map { database + $0 }
        let deadline = ContinuousClock.now + config.stopTimeout
        var scan = OpenFiles.Scan()
        while true {
            scan = await BlockingPool.shared.run { OpenFiles.scan(of: paths) }
            if scan.holders.isEmpty || ContinuousClock.now >= deadline { break }
            try? await Task.sleep(for: .milliseconds(50))
        }
        let holders = scan.holders
        if !holders.isEmpty {
            let text = "\(holders.map(\.description).joined(separator: ", ")) still \(holders.count == 1 ? "has" : "have") \(database) open after the app was stopped"
            await step(IncidentStepName.release, .failed, text, at: stopped, ended: Date())
            return .appStopFailed(text)
        }
        if scan.isComplete {
            await step(IncidentStepName.release, .ok, "replication paused; no process has the database open", at: stopped, ended: Date())
        } else if scan.locksRead {
            // Every SQLite connection to a WAL database shows in /proc/locks;
            // only a plain open of another user's process can go unseen.
            await step(
                IncidentStepName.release, .ok,
                "replication paused; no SQLite connection to the database (none in /proc/locks); "
                    + (scan.processesHidden
                    ? "other users' processes are hidden in /proc and could not be inspected for other open files"
                    : "\(scan.uninspected) processes of other users could not be inspected for other open files"),
                at: stopped, ended: Date())
        } else {
            let text = "cannot tell whether another process has \(database) open: \(scan.processesHidden ? "other users' processes are hidden" : "\(scan.uninspected) processes could not be inspected") "
                + "and /proc/locks is unreadable (give guardian ProcSubset=all, or run it where it can read /proc/<pid>/fd)"
            await step(IncidentStepName.release, .failed, text, at: stopped, ended: Date())
            return .appStopFailed(text)
        }
        await save()
        return .appStopped
    }

    /// Why a restore cannot fit beside the database (the restored copy is
    /// written into the database's directory, then renamed over it), or nil.
    /// The disk guardian may be freeing space right now: wait up to
    /// `roomWait` for it before giving up.
    private func roomShortfall() async -> String? {
        let db = database
        let deadline = ContinuousClock.now + config.roomWait
        while true {
            let room = await BlockingPool.shared.run { RestoreRoom.check(database: db) }
            guard let shortfall = room.shortfall else { return nil }
            if ContinuousClock.now >= deadline || Task.isCancelled { return shortfall }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    private func quarantine() async -> IncidentMachine.Event {
        guard let r = record else { return .quarantineFailed("no incident record") }
        let start = Date()
        let db = database
        ownership = await BlockingPool.shared.run { FileOwnership.of(db) }
        let dir = Quarantine.directory(for: database, base: config.quarantineDir, incident: r.id, at: start)
        let note = "guardian incident \(r.id) on \(r.host), \(Timestamps.iso8601(start))\nDatabase: \(database)\nCause: \(r.cause.title)\nPost-mortem: guardian incidents show \(r.id)"
        do {
            let moved = try await BlockingPool.shared.run { try Quarantine.move(database: db, into: dir, note: note) }
            record?.quarantineDir = dir
            record?.quarantined = moved
            let list = moved.map { "\(($0.original as NSString).lastPathComponent) (\(Units.formatBytes($0.size)))" }.joined(separator: ", ")
            await step(IncidentStepName.quarantine, .ok, "moved \(list) into \(dir) (kept, never deleted)", at: start, ended: Date())
            await save()
            return .quarantined
        } catch {
            await step(IncidentStepName.quarantine, .failed, "\(error); nothing was left moved", at: start, ended: Date())
            return .quarantineFailed("\(error)")
        }
    }

    private func planRestore() async -> IncidentMachine.Event {
        let start = Date()
        let p = await source.plan(maxCandidates: config.maxRestoreAttempts)
        plan = p
        var detail = p.candidates.isEmpty
            ? "no restore point"
            : "\(p.candidates.count) restore point\(p.candidates.count == 1 ? "" : "s"): " + p.candidates.map(\.label).joined(separator: "; ")
        if !p.problems.isEmpty { detail += "; skipped: " + p.problems.joined(separator: "; ") }
        await step(IncidentStepName.plan, p.candidates.isEmpty ? .failed : .ok, detail, at: start, ended: Date())
        let problems = p.problems.isEmpty ? "no replica is configured" : p.problems.joined(separator: "; ")
        return .restorePlanned(candidates: p.candidates.count, problems: problems)
    }

    private func restore(attempt: Int) async -> IncidentMachine.Event {
        guard let candidate = plan?.candidates[safe: attempt], let r = record else { return .restoreFailed("no restore candidate \(attempt + 1)") }
        let path = Quarantine.restorePath(for: database, incident: r.id, attempt: attempt)
        await BlockingPool.shared.run { Quarantine.discard(path) }
        let start = Date()
        if record?.restoreStartedAt == nil { record?.restoreStartedAt = start }
        record?.restoreAttempts = attempt + 1
        logger.event(.restoreStarted, ["db": "\(database)", "incident": "\(r.id)", "replica": "\(candidate.replica)", "txid": "\(LTXNaming.hex(candidate.txid))"])
        do {
            let copy = try await source.restore(candidate, to: path)
            let end = Date()
            record?.restoreFinishedAt = end
            record?.restoredTXID = copy.txid
            record?.restoredAt = copy.timestamp ?? candidate.timestamp
            record?.restoredFrom = candidate.label
            record?.restoredBytes = copy.bytes
            logger.event(.restoreFinished, ["db": "\(database)", "incident": "\(r.id)", "txid": "\(LTXNaming.hex(copy.txid))", "bytes": "\(copy.bytes)"])
            await step(IncidentStepName.restore, .ok, "attempt \(attempt + 1): \(candidate.label), \(Units.formatBytes(copy.bytes)) up to TXID \(LTXNaming.hex(copy.txid))", at: start, ended: end)
            await save()
            return .restored
        } catch {
            logger.event(.restoreFailed, level: .error, ["db": "\(database)", "incident": "\(r.id)", "replica": "\(candidate.replica)", "error": "\(error)"])
            await BlockingPool.shared.run { Quarantine.discard(path) }
            await step(IncidentStepName.restore, .failed, "attempt \(attempt + 1): \(candidate.label): \(error)", at: start, ended: Date())
            return .restoreFailed("\(candidate.label): \(error)")
        }
    }

    private func verify(attempt: Int) async -> IncidentMachine.Event {
        guard let r = record else { return .verifyFailed("no incident record") }
        let path = Quarantine.restorePath(for: database, incident: r.id, attempt: attempt)
        let queries = config.verifyQueries
        var budget = config.confirmBudget
        let start = Date()
        var result = await RemediatePool.shared.run { [budget] in IntegrityChecker.verifyCopy(path: path, queries: queries, budget: budget) }
        if case .failure(let f) = result, f.inconclusive {
            // Out of time is no verdict: once more with more time.
            await step(IncidentStepName.note, .info, "attempt \(attempt + 1): verification inconclusive (\(f)); trying again with \(Self.verifyRetryFactor)x the time")
            budget = budget * Self.verifyRetryFactor
            result = await RemediatePool.shared.run { [budget] in IntegrityChecker.verifyCopy(path: path, queries: queries, budget: budget) }
        }
        let end = Date()
        record?.verifyFinishedAt = end
        switch result {
        case .success:
            let q = queries.isEmpty ? "" : "; \(queries.count) verification quer\(queries.count == 1 ? "y" : "ies") non-zero"
            await step(IncidentStepName.verify, .ok, "integrity_check ok\(q)", at: start, ended: end)
            return .verified
        case .failure(let f) where f.inconclusive:
            await step(IncidentStepName.verify, .failed, "attempt \(attempt + 1): inconclusive, \(f); the copy is kept at \(path)", at: start, ended: end)
            return .verifyInconclusive("\(f); copy kept at \(path)")
        case .failure(let f):
            await step(IncidentStepName.verify, .failed, "attempt \(attempt + 1): \(f)", at: start, ended: end)
            return .verifyFailed(f.description)
        }
    }

    /// A verification that ran out of time is tried once more with this many times the budget.
    static let verifyRetryFactor = 4

    private func swap() async -> IncidentMachine.Event {
        guard let r = record else { return .swapFailed("no incident record") }
        let path = Quarantine.restorePath(for: database, incident: r.id, attempt: machine.attempt)
        let db = database
        let own = ownership
        let dir = r.quarantineDir ?? Quarantine.directory(for: database, base: config.quarantineDir, incident: r.id, at: Date())
        let start = Date()
        do {
            let extra = try await BlockingPool.shared.run { try Quarantine.swap(restored: path, into: db, ownership: own, quarantineDir: dir) }
            record?.quarantined.append(contentsOf: extra)
            var detail = "renamed into \(database)"
            if let own { detail += " with \(own.description)" }
            if !extra.isEmpty { detail += "; quarantined files that had appeared meanwhile: " + extra.map(\.original).joined(separator: ", ") }
            await step(IncidentStepName.swap, .ok, detail, at: start, ended: Date())
            if paused {
                paused = false
                await hooks.resume(database, record?.restoredTXID)
            }
            return .swapped
        } catch {
            await step(IncidentStepName.swap, .failed, "\(error)", at: start, ended: Date())
            return .swapFailed("\(error)")
        }
    }

    private func startApp() async -> IncidentMachine.Event {
        guard let app else { return .appStartFailed("no way to start the app is configured") }
        let start = Date()
        do {
            let active = try await app.start(timeout: config.startTimeout)
            record?.appActiveAt = active
            await step(IncidentStepName.startApp, .ok, "\(app.description): active", at: start, ended: active)
            return .appStarted(at: active)
        } catch {
            await step(IncidentStepName.startApp, .failed, "\(app.description): \(error)", at: start, ended: Date())
            return .appStartFailed("\(error)")
        }
    }

    private func resolve(byOperator: Bool) async {
        guard var r = record else { return }
        let now = Date()
        r.phase = .resolved
        r.outcome = byOperator ? .resolvedByOperator : .resolvedAutomatically
        r.closedAt = now
        record = r
        var summary: String
        if byOperator {
            summary = "\(database) is healthy again (integrity check ok); incident \(r.id) closed"
            await step(IncidentStepName.resolved, .ok, "a full integrity check passed after the escalation: repaired by an operator", at: now)
        } else {
            summary = "\(database) restored and the app is back"
            if let down = r.downtime { summary += " after \(Units.formatDuration(down))" }
            if let lost = r.transactionsLost { summary += "; \(lost) transaction\(lost == 1 ? "" : "s") lost" }
            await step(IncidentStepName.resolved, .ok, summary, at: now)
        }
        integrity.state = "ok"
        integrity.detail = nil
        cursor = IntegrityCursor()
        logger.event(.incidentResolved, ["db": "\(database)", "incident": "\(r.id)", "by_operator": "\(byOperator)", "downtime_ms": "\(r.downtime?.milliseconds ?? -1)"])
        await alerter.resolve(key: alerter.key(database: database, kind: "incident-\(r.id)"), summary: summary, details: ["postmortem": "guardian incidents show \(r.id)"])
        await save()
        lastClosed = record
        record = nil
        confirmation = []
        confirmedAt = nil
        try? await store.log("incident-resolved", database: database, incident: r.id, detail: summary)
    }

    private func escalate(_ reason: EscalationReason, restartApp: Bool) async {
        if record == nil { await openIncident(remediating: false) }
        guard let r = record else { return }
        record?.escalation = reason.description
        record?.outcome = reason == .alertOnly ? .open : .escalated
        logger.event(.incidentEscalated, level: .critical, ["db": "\(database)", "incident": "\(r.id)", "reason": "\(reason.kind)", "detail": "\(reason.description)"])
        await step(IncidentStepName.escalated, .info, reason.description)
        if restartApp, let app {
            // Nothing was moved: put the app back as it was.
            let start = Date()
            do {
                _ = try await app.start(timeout: config.startTimeout)
                await step(IncidentStepName.startApp, .ok, "\(app.description): restarted on the untouched (damaged) database", at: start, ended: Date())
            } catch {
                await step(IncidentStepName.startApp, .failed, "\(app.description): \(error)", at: start, ended: Date())
            }
        }
        if paused {
            paused = false
            await hooks.resume(database, nil)
        }
        var summary = reason == .alertOnly
            ? "\(r.headline): needs a human (remediation is alert-only)"
            : "\(r.headline): guardian could not repair it — \(reason.description)"
        if let dir = record?.quarantineDir { summary += ". Damaged files kept in \(dir)" }
        await alert(severity: .critical, summary: summary)
        await save()
        try? await store.log("incident-escalated", level: "critical", database: database, incident: r.id, detail: reason.description)
    }

    // MARK: - Recording

    private func step(_ name: String, _ outcome: IncidentStep.Outcome, _ detail: String, at: Date = Date(), ended: Date? = nil) async {
        guard let id = record?.id else { return }
        stepSeq += 1
        let s = IncidentStep(seq: stepSeq, at: at, endedAt: ended, step: name, outcome: outcome, detail: detail)
        record?.steps.append(s)
        record?.phase = machine.phase
        logger.event(.incidentStep, level: outcome == .failed ? .error : .notice, [
            "db": "\(database)", "incident": "\(id)", "step": "\(name)", "outcome": "\(outcome.rawValue)", "detail": "\(detail)",
            "duration_ms": "\(s.duration?.milliseconds ?? 0)",
        ])
        do { try await store.appendStep(incident: id, s) } catch { storeFailed(error) }
    }

    private func save() async {
        guard var r = record else { return }
        if r.outcome == .open || r.outcome == .escalated { r.phase = machine.phase }
        record?.phase = r.phase
        do { try await store.updateIncident(r) } catch { storeFailed(error) }
    }

    private func storeFailed(_ error: any Error) {
        // The incident goes on without its record; say so once per run.
        guard !storeWarned else { return }
        storeWarned = true
        logger.event(.internalError, level: .error, ["db": "\(database)", "what": "writing guardian's state database", "error": "\(error)"])
    }

    // MARK: - Status

    public func status() -> HealthStatus {
        var state: String
        switch machine.phase {
        case .healthy, .resolved:
            state = assessor.current?.level ?? "healthy"
            if state == "ok" { state = "healthy" }
            if integrity.state == "missing" { state = "missing" }
        case .suspect: state = "suspect"
        case .escalated: state = "escalated"
        case .awaitingOperator: state = "awaiting-operator"
        default: state = "remediating"
        }
        if config.mode == .off { state = "off" }
        return HealthStatus(
            path: database, mode: config.effectiveMode.rawValue, state: state, checkpoint: assessor.current, integrity: integrity,
            openIncidents: record.map { [IncidentSummary($0)] } ?? [], lastIncident: lastClosed.map(IncidentSummary.init),
            updatedAt: Timestamps.iso8601(Date()), incidentsOpened: incidentsOpened)
    }

    public func currentIncident() -> IncidentRecord? { record }

    private func publish() async {
        await onStatus(status())
    }
}

extension Array {
    subscript(safe i: Int) -> Element? { indices.contains(i) ? self[i] : nil }
}
