import AsyncAlgorithms
import Foundation
import Logging
import Platform
import Replication
import ServiceLifecycle

/// Records a finished drill in guardian's state database and alerts: a
/// failed drill triggers (critical; a warning when the drill could not run
/// for lack of room), and the next passing drill of that replica resolves
/// it. Shared by the daemon's `DrillService` and `guardian drill`.
public struct DrillRecorder: Sendable {
    public let store: StateStore
    public let alerter: Alerter?
    let logger: Logger

    public init(store: StateStore, alerter: Alerter?, logger: Logger) {
        self.store = store
        self.alerter = alerter
        self.logger = logger
    }

    /// `drill-<replica>`: one alert per replica of a database, so a broken
    /// replica stays triggered while the others pass.
    public static func alertKind(replica: String) -> String { "drill-\(replica)" }

    /// Records `result` (an interrupted drill is neither recorded nor
    /// alerted) and returns it with its history id.
    @discardableResult
    public func record(_ result: DrillResult) async -> DrillResult {
        guard !result.interrupted else { return result }
        var r = result
        do {
            r.id = try await store.recordDrill(result)
        } catch {
            logger.event(.internalError, level: .error, ["what": "recording a drill of \(result.database)", "error": "\(error)"])
        }
        await alert(r)
        return r
    }

    func alert(_ r: DrillResult) async {
        guard let alerter else { return }
        let key = alerter.key(database: r.database, kind: Self.alertKind(replica: r.replica))
        var details = ["replica": r.replica, "destination": r.destination, "started_at": Timestamps.iso8601(r.startedAt)]
        if let txid = r.txid { details["txid"] = LTXNaming.hex(txid) }
        if let rows = r.rows { details["rows"] = "\(rows)" }
        if r.passed {
            details["integrity"] = r.integrity ?? "ok"
            await alerter.resolve(
                key: key, summary: "Recovery drill of \(r.database) from \(r.replica) passed again", details: details)
        } else {
            let reason = r.reason ?? "failed"
            details["reason"] = reason
            details["failure"] = r.failure?.rawValue ?? "restore"
            await alerter.trigger(
                key: key, severity: r.failure?.severity ?? .critical,
                summary: "Recovery drill FAILED: \(r.database) <- \(r.replica) (\(r.destination)): \(reason)",
                database: r.database, details: details, at: r.startedAt)
        }
    }
}

/// Runs a database's recovery drills on their schedule, for as long as the
/// daemon runs: every replica (or the configured one) in turn, one drill at
/// a time. The next drill is computed by `DrillSchedule.nextRun` from the
/// last drill recorded in the state database, so a restart neither repeats
/// nor skips one; a slot missed while guardian was down runs shortly after
/// the start. The timer (`AsyncTimerSequence`) fires at the next drill or
/// after `tick`, whichever is sooner, and compares wall clock time, so a
/// weekly slot holds across suspends and clock changes.
/// A graceful shutdown cancels a running drill (its copy is removed, and it
/// is not recorded). Results go to the status board through `onStatus`.
/// The services of all databases share `DrillGate.shared`: their drills take
/// turns (a drill due while another runs waits, shown as running).
public struct DrillService: Service {
    public struct Timing: Sendable {
        /// How often the timer compares the clock with the next drill.
        public var tick: Duration
        /// Delay before an overdue (or first interval) drill after a start.
        public var catchUp: Duration
        public var timeZone: TimeZone

        public init(tick: Duration = .seconds(30), catchUp: Duration = .seconds(300), timeZone: TimeZone = .current) {
            self.tick = tick
            self.catchUp = catchUp
            self.timeZone = timeZone
        }
    }

    public let database: String
    public let config: DrillConfig
    /// The replicas drilled, in configuration order.
    public let replicas: [ReplicaConfig]
    let runner: DrillRunner
    let recorder: DrillRecorder
    let alerter: Alerter
    let runsAlerter: Bool
    let timing: Timing
    let logger: Logger
    let onStatus: @Sendable (DrillStatus) async -> Void

    /// `alerter` delivers the drill alerts; `runsAlerter` says whether this
    /// service runs its delivery loop (true for an alerter of its own, false
    /// for one shared with other services that someone else runs).
    public init(
        database: String, replicas: [ReplicaConfig], config: DrillConfig, stateDir: String, alerter: Alerter, runsAlerter: Bool,
        logger: Logger, timing: Timing = Timing(), onStatus: @escaping @Sendable (DrillStatus) async -> Void = { _ in }
    ) {
        self.database = database
        self.config = config
        self.replicas = config.replica.map { name in replicas.filter { $0.name == name } } ?? replicas
        runner = DrillRunner(database: database, config: config, scratchDir: config.scratchDirectory(stateDir: stateDir), logger: logger)
        recorder = DrillRecorder(store: StateStore(stateDir: stateDir), alerter: alerter, logger: logger)
        self.alerter = alerter
        self.runsAlerter = runsAlerter
        self.timing = timing
        self.logger = logger
        self.onStatus = onStatus
    }

    public func run() async throws {
        let alerter = alerter
        await withTaskGroup(of: Void.self) { group in
            if runsAlerter { group.addTask { await alerter.run() } }
            await schedule()
            guard runsAlerter else { return }
            // Let a queued alert (the trigger of a drill that just failed) go out, briefly.
            await alerter.finishAndDrain(limit: .seconds(5))
            group.cancelAll()
        }
    }

    /// The schedule loop; returns on graceful shutdown or cancellation.
    func schedule() async {
        await runner.removeStaleCopies()
        var lastRound: Date?
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            let recorded = await latestRecorded()
            let last = [recorded, lastRound].compactMap { $0 }.max()
            let next = config.schedule.nextRun(after: last, now: Date(), catchUp: timing.catchUp, timeZone: timing.timeZone)
            logger.event(.drillScheduled, [
                "db": "\(database)", "at": "\(Timestamps.iso8601(next))", "schedule": "\(config.schedule.description)",
                "replicas": "\(replicas.map(\.name).joined(separator: ","))",
            ])
            await publish(next: next, running: false)
            guard await wait(until: next), !Task.isShuttingDownGracefully else { return }
            lastRound = Date()
            for replica in replicas {
                await publish(next: nil, running: true)
                let runner = runner
                let result = await cancelWhenGracefulShutdown { await runner.run(replica: replica, trigger: .schedule) }
                if result.interrupted { return }
                await recorder.record(result)
            }
        }
    }

    /// Waits until the wall clock reaches `date`, looking at it at least
    /// every `tick`; false on graceful shutdown or cancellation.
    func wait(until date: Date) async -> Bool {
        while Date() < date {
            let left = Duration.milliseconds(Int64(date.timeIntervalSinceNow * 1000) + 1)
            var ticked = false
            for await _ in AsyncTimerSequence(interval: min(timing.tick, max(left, .milliseconds(10))), clock: .continuous).cancelOnGracefulShutdown() {
                ticked = true
                break
            }
            if !ticked { return false }
        }
        return !Task.isCancelled
    }

    /// When the newest recorded drill of this database started.
    func latestRecorded() async -> Date? {
        do {
            return try await recorder.store.drills(database: database, limit: 1).first?.startedAt
        } catch {
            logger.event(.internalError, level: .warning, ["what": "reading the drill history of \(database)", "error": "\(error)"])
            return nil
        }
    }

    /// Publishes the newest drill of each replica and the next date.
    func publish(next: Date?, running: Bool) async {
        let latest = (try? await recorder.store.latestDrills(database: database, replicas: replicas.map(\.name))) ?? []
        let newest = latest.max { $0.startedAt < $1.startedAt }
        await onStatus(DrillStatus(
            path: database, schedule: config.schedule.description, nextAt: next.map(Timestamps.iso8601), running: running,
            last: newest?.summary, replicas: latest.map(\.summary)))
    }
}
