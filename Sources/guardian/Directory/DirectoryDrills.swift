import AsyncAlgorithms
import Foundation
import Logging
import Platform
import Remediate
import Replication
import ServiceLifecycle

/// Scheduled recovery drills of a directory entry: on the entry's `drill:`
/// schedule, a sample of `drill.sample` databases (default 10) — those whose
/// last recorded drill is oldest, never drilled first — each restored from
/// its replicas in turn by `DrillRunner` (drills of the whole process take
/// turns through `DrillGate`), recorded and alerted like any drill. Over
/// successive runs every database is drilled, without a run ever restoring
/// thousands of databases at once.
struct DirectoryDrills {
    let entry: GuardianConfig.Directory
    let config: DrillConfig
    let registry: DirectoryRegistry
    var timing = DrillService.Timing()

    /// The `count` databases drilled longest ago (never drilled first; then by path).
    static func pick(_ dbs: [String], last: [String: Date], count: Int) -> [String] {
        Array(dbs.sorted { (last[$0] ?? .distantPast, $0) < (last[$1] ?? .distantPast, $1) }.prefix(count))
    }

    func run() async {
        let wiring = registry.wiring
        let store = StateStore(stateDir: wiring.stateDir)
        let recorder = DrillRecorder(store: store, alerter: wiring.alerter, logger: wiring.logger)
        var last: [String: Date] = [:]
        do {
            for r in try await store.drills(limit: 1_000_000) where entry.covers(r.database) {
                last[r.database] = max(last[r.database] ?? r.startedAt, r.startedAt)
            }
        } catch {
            wiring.logger.event(.internalError, level: .warning, ["what": "reading the drill history of \(entry.dir)", "error": "\(error)"])
        }
        var lastRound = last.values.max()
        while !Task.isCancelled, !Task.isShuttingDownGracefully {
            let next = config.schedule.nextRun(after: lastRound, now: Date(), catchUp: timing.catchUp, timeZone: timing.timeZone)
            wiring.logger.event(.drillScheduled, [
                "db": "\(entry.dir)/\(entry.spec.pattern)", "at": "\(Timestamps.iso8601(next))", "schedule": "\(config.schedule.description)",
                "replicas": "sample of \(entry.drillSample)",
            ])
            guard await Self.wait(until: next, tick: timing.tick) else { return }
            lastRound = Date()
            for path in Self.pick(await registry.databases(), last: last, count: entry.drillSample) {
                let db = entry.database(at: path)
                let replicas = config.replica.map { n in db.replication.replicas.filter { $0.name == n } } ?? db.replication.replicas
                let runner = DrillRunner(database: path, config: config, scratchDir: config.scratchDirectory(stateDir: wiring.stateDir), logger: wiring.logger)
                await publish(path, replicas: replicas, store: store, running: true)
                for replica in replicas {
                    let result = await cancelWhenGracefulShutdown { await runner.run(replica: replica, trigger: .schedule) }
                    if result.interrupted || Task.isShuttingDownGracefully { return }
                    await recorder.record(result)
                }
                last[path] = Date()
                await publish(path, replicas: replicas, store: store, running: false)
            }
        }
    }

    private func publish(_ path: String, replicas: [ReplicaConfig], store: StateStore, running: Bool) async {
        let latest = (try? await store.latestDrills(database: path, replicas: replicas.map(\.name))) ?? []
        let newest = latest.max { $0.startedAt < $1.startedAt }
        await registry.wiring.board.updateDrill(DrillStatus(
            path: path, schedule: "\(config.schedule.description), sample of \(entry.drillSample) per run", nextAt: nil,
            running: running, last: newest?.summary, replicas: latest.map(\.summary)))
    }

    /// Waits until the wall clock reaches `date`, looking at it at least
    /// every `tick`; false on graceful shutdown or cancellation.
    static func wait(until date: Date, tick: Duration) async -> Bool {
        while Date() < date {
            let left = Duration.milliseconds(Int64(date.timeIntervalSinceNow * 1000) + 1)
            var ticked = false
            for await _ in AsyncTimerSequence(interval: min(tick, max(left, .milliseconds(10))), clock: .continuous).cancelOnGracefulShutdown() {
                ticked = true
                break
            }
            if !ticked { return false }
        }
        return !Task.isCancelled
    }
}
