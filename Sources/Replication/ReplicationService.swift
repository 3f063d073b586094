import AsyncAlgorithms
import Foundation
import Logging
import Platform
import ServiceLifecycle

/// Replicates one database for as long as it runs: opens it (retrying while
/// it is missing), finds where each replica stands, then syncs on every WAL
/// write (inotify) or poll tick, checkpoints, snapshots on schedule, and
/// ships to every replica on its own task. On graceful shutdown it makes a
/// final sync and lets the replicas catch up before returning.
public struct ReplicationService: Service {
    public let config: DatabaseConfig
    let stagingDir: String
    let stateDir: String
    let logger: Logger
    let onStatus: @Sendable (DatabaseStatus) async -> Void
    /// Called on the loop's own thread (no hop when it does not suspend:
    /// a beat per tick of every database costs no thread switch).
    let heartbeat: @Sendable () -> Void
    let control: ReplicationControl
    /// The status last handed to `onStatus` in this session (an idle tick
    /// that changes nothing publishes nothing).
    private let published = LockedValue<DatabaseStatus?>(nil)

    public init(
        config: DatabaseConfig, stateDir: String, logger: Logger,
        onStatus: @escaping @Sendable (DatabaseStatus) async -> Void = { _ in },
        heartbeat: @escaping @Sendable () -> Void = {},
        control: ReplicationControl = ReplicationControl()
    ) {
        self.control = control
        self.config = config
        // One staging folder per database for snapshots on their way out.
        let key = config.path.replacingOccurrences(of: "/", with: "_")
        stagingDir = "\(stateDir)/staging/\(key)"
        self.stateDir = stateDir
        self.logger = logger
        self.onStatus = onStatus
        self.heartbeat = heartbeat
    }

    public func run() async throws {
        // Remediation may pause replication while it swaps the database file;
        // each session ends when paused and a new one starts on resume.
        var fullImage = false
        while true {
            let replaced = try await runSession(fullImage: fullImage)
            // A new session after a pause or a replaced file starts with a
            // full image: the file at the path may hold anything now.
            fullImage = true
            if Task.isCancelled || Task.isShuttingDownGracefully { return }
            // (A replaced file during a pause waits for the resume like any pause.)
            guard await control.isPaused(config.path) else {
                if replaced { continue }
                return
            }
            await control.acknowledgePause(config.path)
            await onStatus(DatabaseStatus(path: config.path, state: "paused"))
            // Paused is not hung: the loop keeps beating while remediation works.
            await Heartbeat.whileWorking(limit: Self.longWorkLimit, beat: heartbeat) { await control.waitForResume(config.path) }
            if Task.isCancelled || Task.isShuttingDownGracefully { return }
        }
    }

    /// How long known long work (start-up against slow replicas and the
    /// first full image, a snapshot, a remediation pause) keeps the loop's
    /// heartbeat going; past it, a loop still inside counts as hung.
    public static let longWorkLimit: Duration = .seconds(1800)

    /// Returns true when the session ended because the database file was
    /// replaced at its path (a new session must start on the new file).
    private func runSession(fullImage: Bool) async throws -> Bool {
        let replicator = Replicator(config: config, stagingDir: stagingDir, logger: logger)
        published.withLock { $0 = nil }
        // Nothing staged by an earlier session (a crash, a failed upload) is
        // still needed: the replicas' listings say where to continue.
        do {
            try await BlockingPool.shared.run { [stagingDir] in try Staging.reset(stagingDir) }
        } catch {
            logger.event(.internalError, level: .warning, ["db": "\(config.path)", "error": "cleaning the staging directory: \(error)"])
        }
        // 0. A slot within the open-file limit (see `DatabaseSlots`).
        var reported = ""
        while !DatabaseSlots.shared.take() {
            let text = DatabaseSlots.shared.refusal
            if text != reported {
                let loud = DatabaseSlots.shared.logsRefusal()
                logger.event(.databaseOpenFailed, level: loud ? .error : .debug, ["db": "\(config.path)", "error": "\(text)"])
                reported = text
            }
            if await control.isPaused(config.path) { return false }
            await onStatus(DatabaseStatus(path: config.path, state: "error", error: text))
            heartbeat()
            try? await Task.sleep(for: max(config.monitorInterval, .seconds(1)))
            if Task.isCancelled || Task.isShuttingDownGracefully { return false }
        }
        defer { DatabaseSlots.shared.give() }
        // 1. Open, retrying while the database is missing or not in WAL mode.
        while true {
            do {
                try await replicator.open()
                break
            } catch {
                let text = "\(error)"
                if text != reported {
                    logger.event(.databaseOpenFailed, level: .error, ["db": "\(config.path)", "error": "\(text)"])
                    reported = text
                }
                if await control.isPaused(config.path) { return false }
                let missing = !FileManager.default.fileExists(atPath: config.path)
                await onStatus(DatabaseStatus(path: config.path, state: missing ? "missing" : "error", error: text))
                heartbeat()
                try? await Task.sleep(for: config.monitorInterval)
                if Task.isCancelled || Task.isShuttingDownGracefully { return false }
            }
        }
        if await control.isPaused(config.path) {
            await replicator.closeConnections()
            return false
        }
        logger.event(.databaseOpened, ["db": "\(config.path)", "page_size": "\(await replicator.pageSize)"])
        // Finding the replicas' positions and writing the first image may take long.
        let startup = Heartbeat.start(limit: Self.longWorkLimit, beat: heartbeat)
        defer { startup.cancel() }

        // 2. Where do the replicas stand? At least one must answer before
        // guardian numbers new files (the pin keeps every frame meanwhile).
        let book = PositionBook()
        var shippers: [ReplicaShipper] = []
        for replica in config.replicas {
            let client = try ReplicaClients.make(replica.target)
            let record = ReplicaHistory.recordPath(stateDir: stateDir, database: config.path, replica: replica)
            shippers.append(ReplicaShipper(config: replica, client: client, replicator: replicator, positions: book, logger: logger, recordPath: record))
        }
        // The database is open: say so before asking the replicas (one that
        // does not answer must not keep guardian from being ready).
        await publishStatus(replicator, shippers)
        // Every replica is asked; one that does not answer is not "at 0": its
        // shipper asks again before writing to it, and one found ahead of (or
        // apart from) this session's numbering gets a snapshot above it.
        var positions: [UInt64] = []
        var newestL0: LTXHeader?
        var newestHistory = ""
        while !shippers.isEmpty {
            for s in shippers {
                do {
                    // A replica that does not answer must not hold up a shutdown.
                    let (p, h, history) = try await cancelWhenGracefulShutdown { try await s.discover() }
                    positions.append(p)
                    if let h, h.maxTXID >= (newestL0?.maxTXID ?? 0) {
                        newestL0 = h
                        newestHistory = history
                    }
                } catch {
                    logger.event(.replicaSyncFailed, level: .warning, ["db": "\(config.path)", "replica": "\(s.config.name)", "error": "\(error)"])
                }
            }
            if !positions.isEmpty { break }
            await publishStatus(replicator, shippers)
            heartbeat()
            try? await Task.sleep(for: .seconds(1))
            let paused = await control.isPaused(config.path)
            if Task.isCancelled || Task.isShuttingDownGracefully || paused {
                await replicator.closeConnections()
                return false
            }
        }
        try await replicator.bootstrap(replicaPositions: positions, newestL0: newestL0, newestHistory: newestHistory, fullImage: fullImage)
        let found = shippers
        if let newestSnapshot = try? await cancelWhenGracefulShutdown({ try await newestSnapshotDate(found) }) { await replicator.markSnapshotTaken(at: newestSnapshot) }
        do {
            try await replicator.sync()
        } catch let r as Replicator.Replaced {
            logger.event(.databaseReplaced, level: .warning, ["db": "\(config.path)", "reason": "\(r)"])
            await replicator.closeConnections()
            return true
        }
        await publishStatus(replicator, shippers)
        startup.cancel()

        // 3. Run the shippers and the sync loop. Both run on the replicator's
        // worker thread, which also receives the WAL's inotify events: a
        // commit is read, encoded and written to a file replica there,
        // without a hand-over to another thread.
        let (wakeups, wake) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let watcher = WALWatcher(walPath: config.path + "-wal", worker: replicator.executor, wake: wake)
        let pass = PassState()
        // A commit is handled by the file event's handler itself, on the
        // worker's thread: no wake-up of the loop's task (which would go
        // through the cooperative pool and back) unless the pass needs it.
        watcher.handleChanges { [self, replicator, shippers] in
            guard pass.parked, replicator.executor.isCurrentThread else { return false }
            return replicator.assumeIsolated { r in quickPass(r, state: pass, watcher: watcher, shippers: shippers, wake: wake) }
        }
        await control.register(config.path, wake: wake)
        await withDiscardingTaskGroup { group in
            for s in shippers {
                let stream = await replicator.subscribe(s.config.name)
                group.addTask { await Self.drain(within: Self.stopDrainLimit) { await s.run(wakeups: stream) } }
            }
            do {
                // The loop's tick comes from the process's one ticker (no task
                // and no timer of its own). While inotify watches the files a
                // tick only beats and checks: every `idleTick` instead of
                // `monitor-interval`.
                let tick = Self.tick(config.monitorInterval, watcher)
                let heartbeat = heartbeat
                let ticker = Ticker.shared.schedule(after: tick()) {
                    // A quiet database's tick beats right here (no wake-up
                    // of its loop): see `IdleGate`.
                    if pass.idle.mayBeatOnTicker(watcher) {
                        heartbeat()
                    } else {
                        wake.yield(())
                    }
                    return tick()
                }
                defer { Ticker.shared.cancel(ticker) }
                await withGracefulShutdownHandler {
                    await replicator.isolated { [shippers] r in await loop(r, wakeups: wakeups, wake: wake, watcher: watcher, shippers: shippers, state: pass) }
                } onGracefulShutdown: {
                    wake.finish()
                }
                // Final sync; the shippers then drain what is pending and stop.
                do { try await replicator.sync() } catch is Replicator.Replaced {} catch {
                    logger.event(.internalError, level: .error, ["db": "\(config.path)", "error": "final sync: \(error)"])
                }
                watcher.stop()
                wake.finish()
            }
            await replicator.finishSubscribers()
        }
        await publishStatus(replicator, shippers)
        await replicator.closeConnections()
        return await replicator.replaced != nil
    }

    /// What the session's loop and the quick pass share; touched only on
    /// the replicator's worker thread.
    final class PassState: @unchecked Sendable {
        /// The loop waits for its next wake-up (a quick pass may run).
        var parked = false
        var lastStatus = ContinuousClock.now - .seconds(10)
        var lastBeat = ContinuousClock.now - .seconds(10)
        var lastShipperWake = ContinuousClock.now
        /// The quick pass wrote files since the shippers were last woken.
        var shippedInline = false
        /// A wake-up of the loop is due within `statusInterval` (the status
        /// of what a quick pass did is published by the loop).
        var statusWakeScheduled = false
        var failing = false
        let idle = IdleGate()
    }

    /// Whether a database's tick may be answered on the ticker's thread
    /// (a beat of its heartbeat, nothing else) instead of waking its loop.
    /// The loop says so after a tick that found the database quiet: no
    /// change reported by inotify, nothing published, no error, nothing
    /// held beyond the pin. Any change reported since, or every
    /// `loopEvery`-th tick (the loop's own look at the files, 2 minutes at
    /// the idle tick), wakes the loop as before. A thousand idle databases
    /// then cost the ticker a lock each per tick, not a thread switch.
    final class IdleGate: @unchecked Sendable {
        static let loopEvery = 24
        private let lock = NSLock()
        private var quiet = false
        private var ticks = QuietTicks(every: loopEvery)

        /// Set by the loop (on its thread) at the end of each wake-up.
        func set(quiet: Bool) {
            lock.withLock {
                self.quiet = quiet
                ticks.start(quiet: quiet)
            }
        }

        /// On the ticker's thread: true when this tick needs no loop.
        func mayBeatOnTicker(_ watcher: WALWatcher) -> Bool {
            lock.withLock {
                guard quiet, ticks.mayAnswer, watcher.isQuiet else { return false }
                ticks.answer()
                return true
            }
        }
    }

    /// The pass a WAL change gets right in its file event's handler, on the
    /// worker's thread, while the loop waits: sync, write the file replicas,
    /// checkpoint — plain calls, no task woken. Anything else (a beat or a
    /// status due, a burst to gather, long work, an error, a replica that
    /// needs its shipper) returns false, and the loop is woken as before.
    private func quickPass(
        _ r: isolated Replicator, state: PassState, watcher: WALWatcher, shippers: [ReplicaShipper], wake: AsyncStream<Void>.Continuation
    ) -> Bool {
        let now = ContinuousClock.now
        guard now - state.lastBeat < Self.beatInterval,
            !state.shippedInline || now - state.lastShipperWake < Self.shipperWakeInterval,
            !state.failing, !r.mayTakeLong, r.replaced == nil, r.lastSyncTransactions <= Replicator.batchThreshold,
            !control.isPausedNow(config.path), watcher.takeChange()
        else { return false }
        state.idle.set(quiet: false)
        do {
            guard r.walMayHaveNew() else {
                try r.idleCheck()
                return true
            }
            r.holdWakeups()
            let found = try r.sync(repin: r.repinDue)
            var served = Set(shippers.filter { s in s.assumeIsolated { $0.shipInline() } }.map(\.config.name))
            if !served.isEmpty { state.shippedInline = true }
            if r.walBytes >= config.checkpointSize {
                try r.checkpointIfNeeded()
                served = served.filter { name in shippers.first { $0.config.name == name }?.assumeIsolated { $0.shipInline() } ?? false }
            }
            r.releaseWakeups(served: served)
            // More commits than a pass's time explains: a burst, read from
            // now on by the loop's passes back to back, without modify events.
            if found.transactions > Self.burstThreshold, watcher.mute() { wake.yield(()) }
            // What this pass did reaches the status within `statusInterval`:
            // one wake-up of the loop from the shared ticker, however many
            // commits come meanwhile.
            if found.files > 0, !state.statusWakeScheduled {
                state.statusWakeScheduled = true
                _ = Ticker.shared.schedule(after: Self.statusInterval) {
                    wake.yield(())
                    return nil
                }
            }
            return true
        } catch {
            r.releaseWakeups(served: [])
            watcher.restoreChange()
            return false
        }
    }

    /// The session's loop, on the replicator's thread: every wake-up (a WAL
    /// change the quick pass left to it, a tick of the poll interval, a
    /// pause) syncs, checkpoints and snapshots as needed. While inotify
    /// reports the WAL's changes a tick without one only checks that the
    /// files are still the database's (no read transaction, no read of the WAL).
    private func loop(_ r: isolated Replicator, wakeups: AsyncStream<Void>, wake: AsyncStream<Void>.Continuation, watcher: WALWatcher, shippers: [ReplicaShipper], state: PassState) async {
        var wakeupsIterator = wakeups.makeAsyncIterator()
        while true {
            state.parked = true
            let woken: Void? = await wakeupsIterator.next(isolation: r)
            state.parked = false
            state.statusWakeScheduled = false
            guard woken != nil else { break }
            if Task.isShuttingDownGracefully { break }
            if let replaced = r.replaced {
                logger.event(.databaseReplaced, level: .warning, ["db": "\(config.path)", "reason": "\(replaced)"])
                break
            }
            // (A beat per wake-up would be a hop per commit: one every half second is plenty.)
            if ContinuousClock.now - state.lastBeat >= Self.beatInterval {
                heartbeat()
                state.lastBeat = .now
            }
            if control.isPausedNow(config.path) { break }
            // A burst (more than 32 transactions per wake-up): let it gather
            // for a few milliseconds before the next file (not when the WAL
            // is past half of max-wal-size: the restart is due now). Smaller
            // groups need no pause: what commits while a file is written is
            // found by the next pass.
            if r.lastSyncTransactions > Replicator.batchThreshold, !r.restartDue {
                try? await Task.sleep(for: .milliseconds(25))
            }
            state.idle.set(quiet: false)
            var quiet = false
            /// Transactions this wake-up's pass found.
            var foundTransactions = 0
            do {
                if !watcher.takeChange(), !r.mayTakeLong, !r.checkpointUnfinished {
                    try r.idleCheck()
                    quiet = r.holdsOnlyThePin && watcher.isActive
                } else if r.mayTakeLong {
                    // A full image or a snapshot may keep the loop busy for long.
                    try await Heartbeat.whileWorking(limit: Self.longWorkLimit, beat: heartbeat) {
                        try r.sync()
                        try r.checkpointIfNeeded()
                        if r.snapshotDue { await shipSnapshot(r, shippers) }
                    }
                } else {
                    // (The loop's passes always move the pin: under a write
                    // storm a pin left behind kept the application's own
                    // checkpoints from progressing, 10 % of its throughput.)
                    let found = try r.sync()
                    // The shippers (on this thread) write what was found
                    // before a checkpoint delays them.
                    if found.files > 0, r.walBytes >= config.checkpointSize, !r.restartDue { await Task.yield() }
                    try r.checkpointIfNeeded()
                    foundTransactions = found.transactions
                }
                state.failing = false
            } catch is Replicator.Replaced {
                quiet = false
                wake.yield(())  // ends the session at the top of the loop
            } catch {
                quiet = false
                if !state.failing { logger.event(.internalError, level: .error, ["db": "\(config.path)", "error": "\(error)"]) }
                state.failing = true
            }
            // Under a burst the passes follow each other without the WAL's
            // modify events (each of the application's writes to its WAL
            // paid for one, a tenth of its CPU): the loop wakes itself while
            // each pass finds more commits. Once one does not (or fails),
            // the events resume and one more pass reads what came before.
            if foundTransactions > Self.burstThreshold {
                if watcher.mute() { wake.yield(()) }
            } else if watcher.isMuted {
                watcher.unmute()
                wake.yield(())
            }
            // The shippers' own periodic work (compaction, retention) runs
            // when they are woken: the quick pass writes file replicas
            // without waking them, so they are woken here once a second while
            // it does (an idle database's shippers sleep, as they did).
            if state.shippedInline, ContinuousClock.now - state.lastShipperWake >= Self.shipperWakeInterval {
                r.wakeSubscribers()
                state.lastShipperWake = .now
                state.shippedInline = false
            }
            if state.shippedInline { quiet = false }
            if ContinuousClock.now - state.lastStatus > Self.statusInterval {
                if await publishStatus(r, shippers) { quiet = false }
                state.lastStatus = .now
            } else {
                quiet = false
            }
            state.idle.set(quiet: quiet)
        }
    }

    /// A pass that finds more transactions than this is reading a burst
    /// (at a millisecond or so per pass, thousands a second).
    static let burstThreshold = 4
    static let statusInterval: Duration = .milliseconds(500)
    static let shipperWakeInterval: Duration = .seconds(1)
    /// The interval of a database's tick: `idleTick` while inotify reports
    /// its changes, `monitor-interval` (a poll) otherwise.
    static func tick(_ monitorInterval: Duration, _ watcher: WALWatcher) -> @Sendable () -> Duration {
        { watcher.isActive ? max(monitorInterval, idleTick) : monitorInterval }
    }

    static let beatInterval: Duration = .milliseconds(500)
    /// The tick while inotify reports every change (well inside the 30 s watchdog).
    static let idleTick: Duration = .seconds(5)

    /// How long the replicas get to take what is pending once guardian is
    /// stopping: one that does not answer must not hold up the stop.
    static let stopDrainLimit: Duration = .seconds(3)

    /// Runs `work`; once guardian is stopping, it gets `limit` more, then is cancelled.
    static func drain(within limit: Duration, _ work: @escaping @Sendable () async -> Void) async {
        let task = Task { await work() }
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await task.value
            } onGracefulShutdown: {
                Task {
                    try? await Task.sleep(for: limit)
                    task.cancel()
                }
            }
        } onCancel: {
            task.cancel()
        }
    }

    private func newestSnapshotDate(_ shippers: [ReplicaShipper]) async throws -> Date? {
        for s in shippers {
            if let files = try? await s.client.listFiles(level: LTXNaming.snapshotLevel, exactTimestamps: false), let last = files.last {
                return last.createdAt
            }
        }
        return nil
    }

    private func shipSnapshot(_ replicator: Replicator, _ shippers: [ReplicaShipper]) async {
        do {
            let snap = try await replicator.snapshot()
            for s in shippers {
                do { try await s.shipSnapshot(snap) } catch {
                    logger.event(.replicaSyncFailed, level: .warning, ["db": "\(config.path)", "replica": "\(s.config.name)", "error": "snapshot: \(error)"])
                }
            }
        } catch {
            logger.event(.internalError, level: .error, ["db": "\(config.path)", "error": "snapshot: \(error)"])
        }
    }

    /// Returns whether the status changed (and was handed on).
    @discardableResult
    private func publishStatus(_ replicator: Replicator, _ shippers: [ReplicaShipper]) async -> Bool {
        let state = await replicator.snapshotOfState()
        let sizes = await replicator.fileSizes()
        var replicas: [ReplicaStatus] = []
        for s in shippers { replicas.append(await s.status()) }
        let checkpoint = state.checkpoint
        let status = DatabaseStatus(
            path: config.path, state: "open", pageSize: Int(state.pageSize), dbSize: sizes.db, walSize: sizes.wal,
            txid: LTXNaming.hex(state.txid), lastCommit: state.lastCommit.map(Timestamps.iso8601), checkpoint: checkpoint,
            checkpointResults: state.checkpointCounts, replicas: replicas)
        // Unchanged (an idle tick): nothing to tell. A replica's lag grows
        // with time, so a lagging one still changes the status every tick.
        let changed = published.withLock { last in
            defer { last = status }
            return last != status
        }
        if changed { await onStatus(status) }
        return changed
    }
}

/// A value behind a lock.
final class LockedValue<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ value: T) { self.value = value }
    func withLock<R>(_ body: (inout T) -> R) -> R { lock.withLock { body(&value) } }
}

/// Lets remediation pause a database's replication while it moves the
/// database file away and swaps a restored copy in, and resume afterwards
/// (replication then starts over from the replicas' position with a full image).
public actor ReplicationControl {
    private var paused: Set<String> = [] {
        didSet { pausedNow.withLock { $0 = paused } }
    }
    /// The same set, for a check from the replication loop without a hop.
    private nonisolated let pausedNow = LockedValue<Set<String>>([])

    /// Whether `path` is paused, from any thread.
    public nonisolated func isPausedNow(_ path: String) -> Bool { pausedNow.withLock { $0.contains(path) } }
    private var wakes: [String: AsyncStream<Void>.Continuation] = [:]
    private var pauseWaiters: [String: [CheckedContinuation<Void, Never>]] = [:]
    private var resumeWaiters: [String: [CheckedContinuation<Void, Never>]] = [:]
    private var acknowledged: Set<String> = []

    public init() {}

    func register(_ path: String, wake: AsyncStream<Void>.Continuation) { wakes[path] = wake }

    public func isPaused(_ path: String) -> Bool { paused.contains(path) }

    /// Stops replication of `path` and returns once guardian holds no
    /// connection or descriptor on it (or after `timeout`).
    public func pause(_ path: String, timeout: Duration = .seconds(10)) async {
        paused.insert(path)
        acknowledged.remove(path)
        wakes[path]?.yield(())
        if acknowledged.contains(path) { return }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.waitForAcknowledgement(path) }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
            self.releasePauseWaiters(path)
        }
    }

    private func waitForAcknowledgement(_ path: String) async {
        if acknowledged.contains(path) { return }
        await withCheckedContinuation { pauseWaiters[path, default: []].append($0) }
    }

    private func releasePauseWaiters(_ path: String) {
        for w in pauseWaiters.removeValue(forKey: path) ?? [] { w.resume() }
    }

    func acknowledgePause(_ path: String) {
        acknowledged.insert(path)
        releasePauseWaiters(path)
    }

    public func resume(_ path: String) {
        paused.remove(path)
        for w in resumeWaiters.removeValue(forKey: path) ?? [] { w.resume() }
    }

    func waitForResume(_ path: String) async {
        guard paused.contains(path) else { return }
        await withCheckedContinuation { resumeWaiters[path, default: []].append($0) }
    }
}
