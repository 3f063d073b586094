import Foundation
import Logging
import Platform

/// Ships LTX files from the replicator to one replica, on its own task, so a
/// slow or failing replica never holds back the others. Failures retry with
/// capped exponential backoff and jitter; the replica's position only moves
/// when a file is safely stored, so nothing is ever skipped.
///
/// The shipper runs on its replicator's `ReplicationWorker` thread: a file
/// replica's write and fsyncs happen right there, in the pass that found the
/// commit (no hand-over to another thread); a remote replica's requests are
/// awaited like before (they run elsewhere).
actor ReplicaShipper {
    nonisolated var unownedExecutor: UnownedSerialExecutor { replicator.unownedExecutor }
    let config: ReplicaConfig
    let client: any ReplicaClient
    let replicator: Replicator
    let positions: PositionBook
    let logger: Logger

    private(set) var position: UInt64?
    /// The replica's history marker ("" when it has none), as last read or written.
    private(set) var history: String?
    /// Where guardian records the history it wrote to this replica (nil: not recorded).
    let recordPath: String?
    /// A file replica's writer lock (`ReplicaHistory.lockName`), held for the session.
    private var lockFD: Int32 = -1
    /// Set when another process was found writing this replica: nothing more is written to it.
    private var foreignWriter: String?
    private var lastMarkerCheck: ContinuousClock.Instant?
    /// When this session last wrote its marker (the lease's renewal).
    private var lastRenewal: ContinuousClock.Instant?
    /// The marker found busy at discovery and since when it is unchanged.
    private var foreignMarker: (bytes: [UInt8], since: ContinuousClock.Instant)?

    deinit { if lockFD >= 0 { close(lockFD) } }
    private(set) var lastSync: Date?
    private(set) var lastError: String?
    private(set) var failures = 0
    private(set) var requests = 0
    private(set) var bytesShipped: Int64 = 0
    private(set) var errors = 0

    init(config: ReplicaConfig, client: any ReplicaClient, replicator: Replicator, positions: PositionBook, logger: Logger, recordPath: String? = nil) {
        self.recordPath = recordPath
        self.config = config
        self.client = client
        self.replicator = replicator
        self.positions = positions
        self.logger = logger
    }

    /// The replica lost the history marker guardian wrote to it.
    struct MarkerLost: Error, CustomStringConvertible {
        let destination: String
        let recorded: String
        let record: String
        var description: String {
            "replica \(destination) no longer holds the history marker guardian wrote to it (history \(recorded)): "
                + "not mounted, or emptied? guardian does not write to it until the marker is back; "
                + "if it was emptied on purpose, remove \(record)"
        }
    }

    /// The replica's newest TXID across all levels, plus the header of its
    /// newest L0 file (to resume without a full image) and its history marker.
    func discover() async throws -> (position: UInt64, newestL0: LTXHeader?, history: String) {
        do {
            let found = try await listPosition()
            if failures == 0 { lastError = nil }
            return found
        } catch {
            // Shown by status while start-up keeps asking (a replica that
            // cannot be listed is not at position 0).
            lastError = "\(error)"
            throw error
        }
    }

    private func listPosition() async throws -> (position: UInt64, newestL0: LTXHeader?, history: String) {
        position = nil
        history = nil
        let marker = try await client.readMarker()
        requests += 1
        if marker == nil, let recordPath, let recorded = await BlockingPool.shared.run({ ReplicaHistory.readRecord(recordPath) }) {
            throw MarkerLost(destination: config.target.destination, recorded: recorded, record: recordPath)
        }
        let found = marker.map(ReplicaHistory.id(of:)) ?? ""
        if case .file(let root) = config.target, lockFD < 0 {
            guard let fd = try await BlockingPool.shared.run({ try ReplicaHistory.lockFileReplica(root: root) }) else {
                throw ReplicaError(.transient, "replica \(config.target.destination) is being written by another process (it holds \(root)/\(ReplicaHistory.lockName)); guardian waits for it to stop")
            }
            lockFD = fd
        }
        // Another process (here or on another host) renews its lease on the
        // replica: guardian does not write there until the lease expires.
        if let marker {
            if foreignMarker?.bytes != marker { foreignMarker = (marker, .now) }
            let unchanged = foreignMarker.map { ContinuousClock.now - $0.since } ?? .zero
            if let busy = ReplicaHistory.liveForeignLease(marker, destination: config.target.destination, unchangedFor: unchanged) {
                throw ReplicaError(.transient, busy)
            }
        }
        foreignMarker = nil
        // Free: the lease is taken before anything is written (the marker
        // keeps the history it names until this session's state is there).
        let readable = marker.map { (try? JSONDecoder().decode(ReplicaHistory.Marker.self, from: Data($0))) != nil } ?? true
        if readable, !(marker.map(ReplicaHistory.isOwnLease) ?? false) {
            try await client.writeMarker(ReplicaHistory.encode(id: found))
            requests += 1
            lastRenewal = .now
            // (Not counted as a check: the first round reads it back, so a
            // process that took the lease at the same moment is seen early.)
        }
        var best: UInt64 = 0
        var newestL0: LTXFileInfo?
        for level in LTXNaming.allLevels {
            let files = try await client.listFiles(level: level, exactTimestamps: false)
            requests += 1
            if let last = files.max(by: { $0.maxTXID < $1.maxTXID }), last.maxTXID >= best {
                best = last.maxTXID
                if level == 0 { newestL0 = last }
            }
        }
        var header: LTXHeader?
        if let f = newestL0, f.maxTXID == best {
            let bytes = try await client.readPrefix(f, count: LTXHeader.size)
            requests += 1
            header = try? LTXHeader.decode(bytes)
        }
        position = best
        history = found
        positions.set(config.name, best)
        return (best, header, found)
    }

    /// Labels the replica with this session's history and notes it locally.
    private func adoptHistory() async throws {
        let id = replicator.historyID
        guard history != id else { return }
        try await client.writeMarker(ReplicaHistory.encode(id: id))
        requests += 1
        lastRenewal = .now
        if let recordPath { try await BlockingPool.shared.run { try ReplicaHistory.writeRecord(recordPath, id: id) } }
        history = id
    }

    /// A file replica's marker is read before each round of uploads (a local
    /// read): a disk unmounted under guardian shows as a missing marker, and
    /// guardian then rediscovers instead of writing into the mount point.
    /// A remote replica's marker is read back every lease interval: when
    /// another process has put its own marker there, guardian stops writing
    /// to that replica and says so (status and log) instead of interleaving
    /// two writers' files. A replica this session has not labelled yet is
    /// not written while another process holds a live lease on it. Once per
    /// lease interval the session renews its own marker (one write).
    private func checkMarkerStillOurs() async throws {
        // (A file replica's marker is read and renewed right here, on the
        // worker's thread: no hop to a blocking thread.)
        if let file = client as? FileReplicaClient { return try checkFileMarkerNow(file) }
        guard let history = try markerCheckDue() else { return }
        let bytes = try await client.readMarker()
        requests += 1
        guard let renewed = try markerVerdict(bytes, history: history) else { return }
        try await client.writeMarker(renewed)
        markerRenewed(renewed, history: history)
    }

    /// The same for a file replica, with no suspension (on the worker's thread).
    private func checkFileMarkerNow(_ file: FileReplicaClient) throws {
        guard let history = try markerCheckDue() else { return }
        let bytes = try file.readMarkerNow()
        guard let renewed = try markerVerdict(bytes, history: history) else { return }
        try file.renewMarkerNow(renewed, over: bytes ?? [])
        markerRenewed(renewed, history: history)
    }

    /// The history to check the marker against, when a check is due (a
    /// file replica's every time, a remote one's once per lease interval).
    private func markerCheckDue() throws -> String? {
        if let foreignWriter { throw ReplicaError(.permanent, foreignWriter) }
        guard let history else { return nil }
        var isFile = false
        if case .file = config.target { isFile = true }
        if !isFile, let last = lastMarkerCheck, ContinuousClock.now - last < ReplicaHistory.leaseInterval { return nil }
        lastMarkerCheck = .now
        return history
    }

    /// What the marker read back says: throws when it is gone or another
    /// writer's; the renewed marker to write when a renewal is due.
    private func markerVerdict(_ read: [UInt8]?, history: String) throws -> [UInt8]? {
        let adopted = history == replicator.historyID
        guard let bytes = read else {
            position = nil
            self.history = nil
            if lockFD >= 0 {
                close(lockFD)  // taken again, on whatever is mounted there, by the next discovery
                lockFD = -1
            }
            throw ReplicaError(.transient, "replica \(config.target.destination): its history marker vanished (unmounted or emptied?); rediscovering")
        }
        if adopted, !markerIsOurs(bytes, history: history) {
            let why = "replica \(config.target.destination) is written by another process too (its history marker now names \(ReplicaHistory.describe(bytes))); guardian stops writing to it: stop the other writer, then restart guardian"
            foreignWriter = why
            throw ReplicaError(.permanent, why)
        }
        if !adopted, !ReplicaHistory.isOwnLease(bytes) {
            // Not labelled with this session's history yet, and the lease
            // taken at discovery is someone else's now.
            position = nil
            self.history = nil
            throw ReplicaError(
                .transient,
                ReplicaHistory.liveForeignLease(bytes, destination: config.target.destination)
                    ?? "replica \(config.target.destination): another writer replaced its marker (\(ReplicaHistory.describe(bytes))); rediscovering")
        }
        if let last = lastRenewal, ContinuousClock.now - last < ReplicaHistory.leaseInterval { return nil }
        // (The same history either way: a renewal of the lease. This
        // session's own marker, unchanged since it wrote it, gets new stamps
        // in place of the old: the same bytes `encode` would make.)
        let own = adopted && markerSeenOurs.map { $0.bytes == bytes && $0.history == history } == true
        return (own ? ReplicaHistory.restamp(bytes) : nil) ?? ReplicaHistory.encode(id: adopted ? history : ReplicaHistory.id(of: bytes))
    }

    private func markerRenewed(_ renewed: [UInt8], history: String) {
        requests += 1
        lastRenewal = .now
        // What this session just wrote is its own: read back, it needs no decode.
        if history == replicator.historyID { markerSeenOurs = (renewed, history) }
    }

    /// Keeps the lease while no commit wakes the shipper: reads the marker
    /// back and renews it once per lease interval.
    private func renewLease() async {
        guard position != nil, foreignWriter == nil else { return }
        do {
            try await checkMarkerStillOurs()
            renewalSucceeded()
        } catch {
            renewalFailed(error)
        }
    }

    /// The same for a file replica, on the worker's thread (`perform`).
    private func renewFileLeaseNow(_ file: FileReplicaClient) {
        guard !renewing, !stopped, position != nil, foreignWriter == nil else { return }
        do {
            try checkFileMarkerNow(file)
            renewalSucceeded()
        } catch {
            renewalFailed(error)
        }
    }

    private func renewalSucceeded() {
        if renewalFailing, failures > 0 {
            logger.event(.replicaRecovered, ["db": "\(replicator.config.path)", "replica": "\(config.name)", "failures": "\(failures)"])
            failures = 0
            lastError = nil
        }
        renewalFailing = false
    }

    private func renewalFailed(_ error: any Error) {
        // Shown like a failed upload; a later renewal or upload clears it.
        if failures == 0 { renewalFailing = true }
        failures += 1
        errors += 1
        lastError = "\(error)"
        logger.event(.replicaSyncFailed, level: failures == 1 ? .warning : .debug, ["db": "\(replicator.config.path)", "replica": "\(config.name)", "error": "\(error)", "failures": "\(failures)"])
    }
    private var renewalFailing = false
    private var renewing = false
    /// Set once `run` is done: a renewal the ticker started just before
    /// then does not write after the lease was let go.
    private var stopped = false

    private func renewLeaseUnlessRenewing() async {
        guard !renewing, !stopped else { return }
        renewing = true
        defer { renewing = false }
        await renewLease()
    }

    /// On a clean stop the lease is let go, so the next writer (a restart,
    /// a standby) need not wait for it to expire.
    private func releaseLease() async {
        guard foreignWriter == nil, history != nil else { return }
        do {
            guard let bytes = try await client.readMarker(), ReplicaHistory.isOwnLease(bytes) else { return }
            try await client.writeMarker(ReplicaHistory.encode(id: ReplicaHistory.id(of: bytes), released: true))
            requests += 2
        } catch {
            logger.event(.replicaSyncFailed, level: .debug, ["db": "\(replicator.config.path)", "replica": "\(config.name)", "error": "releasing the lease: \(error)"])
        }
    }

    /// Ships until `wakeups` ends (after the final sync on shutdown). With a
    /// `sync-interval`, uploads start at most once per interval: a commit
    /// after a quiet spell goes out at once, the commits that follow within
    /// the interval wait for its end and go together (`batches`).
    func run(wakeups: AsyncStream<Void>) async {
        // (Timed by the process's one ticker: no dispatch timer per replica.
        // The first tick at a random point between one and one and a half
        // intervals: the replicas of databases started together renew
        // spread out, not in one burst.
        // Ticks keep their period whatever a renewal takes: 5 % more than
        // the interval, so a renewal is never found "too recent".)
        // No task waits between renewals (a thousand databases' would be
        // a thousand suspended tasks): the ticker starts one when a renewal
        // is due, and a renewal still running when the next is due (a slow
        // remote) is not doubled.
        // A file replica's renewal is a plain call on the worker's thread
        // (no task, no thread of the cooperative pool woken).
        let every = ReplicaHistory.leaseInterval * 1.05
        let worker = replicator.executor
        let file = client as? FileReplicaClient
        let renewer = Ticker.shared.schedule(after: every * Double.random(in: 1..<1.5)) { [weak self] in
            guard let self else { return nil }
            if let file {
                worker.perform { [weak self] in self?.assumeIsolated { $0.renewFileLeaseNow(file) } }
            } else {
                Task { await self.renewLeaseUnlessRenewing() }
            }
            return every
        }
        defer { Ticker.shared.cancel(renewer) }
        var lastShip: ContinuousClock.Instant?
        for await _ in wakeups {
            if config.syncInterval > .zero, let last = lastShip, last + config.syncInterval > .now {
                try? await Task.sleep(until: last + config.syncInterval, clock: .continuous)
            }
            lastShip = .now
            await shipAll()
            await maintain()
        }
        await shipAll()
        Ticker.shared.cancel(renewer)
        stopped = true
        if !Task.isCancelled { await releaseLease() }
    }

    private var lastCompaction: [Int: Date] = [:]

    /// Compaction and L0 retention, each level on its own interval.
    func maintain(now: Date = Date()) async {
        guard failures == 0, position != nil else { return }
        // Levels 1...8 only: level 9 holds the snapshots (the configuration refuses more).
        let levels = replicator.config.compactionLevels.prefix(LTXNaming.snapshotLevel - 1)
        for (i, interval) in levels.enumerated() {
            let level = i + 1
            // Each database's first compaction comes at a random point of its
            // second interval (never before one interval, as before): a
            // thousand databases started together would otherwise all compact
            // in the same second, every interval (the scale benchmark's load
            // saw a 3 s stall of every database then).
            if lastCompaction[level] == nil { lastCompaction[level] = now.addingTimeInterval(Double.random(in: 0...max(0, interval.seconds))) }
            guard let last = lastCompaction[level], now.timeIntervalSince(last) >= interval.seconds else { continue }
            lastCompaction[level] = now
            do {
                try await compact(into: level)
                if level == 1 { try await retainLevel0(now: now) }
            } catch {
                logger.event(.replicaSyncFailed, level: .warning, ["db": "\(replicator.config.path)", "replica": "\(config.name)", "error": "compaction L\(level): \(error)"])
            }
        }
    }

    /// Merges the files of `level - 1` newer than everything at `level` into
    /// one file at `level` (a contiguous run of at least two files). The
    /// inputs are downloaded to the staging directory, merged there as a
    /// stream off the cooperative pool, and the result is uploaded from a
    /// staging file: memory stays bounded whatever the files' sizes. The
    /// staging files are removed whatever happens.
    func compact(into level: Int) async throws {
        guard level >= 1, level < LTXNaming.snapshotLevel else {
            throw LTXError(.invalidInput, file: "L\(level)", "compaction level \(level) is outside 1...\(LTXNaming.snapshotLevel - 1) (level \(LTXNaming.snapshotLevel) holds the snapshots)")
        }
        let source = try await client.listFiles(level: level - 1, exactTimestamps: false)
        let target = try await client.listFiles(level: level, exactTimestamps: false)
        requests += 2
        let floor = target.map(\.maxTXID).max() ?? 0
        let run = Self.contiguousCover(source, above: floor)
        guard run.count >= 2, let first = run.first, let last = run.last else { return }
        let scratch = "\(replicator.stagingDir)/compact-\(config.name.replacingOccurrences(of: "/", with: "_"))"
        try await BlockingPool.shared.run { try Staging.reset(scratch) }
        do {
            var inputs: [(name: String, path: String)] = []
            // A file replica's files are merged where they are: a copy of
            // each into staging was a new file (and a deletion) per input,
            // as many as the replica itself gets in the interval.
            let local = client as? FileReplicaClient
            for (i, f) in run.enumerated() {
                if let local {
                    inputs.append(("\(config.target.destination) \(f)", local.path(of: f)))
                    continue
                }
                let path = "\(scratch)/in-\(i).ltx"
                try await client.downloadFile(f, to: path)
                requests += 1
                inputs.append(("\(config.target.destination) \(f)", path))
            }
            let output = "\(scratch)/out.ltx"
            let header = try await BlockingPool.shared.run { [inputs] in
                let sink = try LTXFileSink(path: output)
                do {
                    let header = try LTXCompactor.merge(files: inputs, into: sink, scratch: scratch)
                    try sink.close(sync: false)
                    for input in inputs where input.path.hasPrefix(scratch + "/") { unlink(input.path) }
                    return header
                } catch {
                    sink.discard()
                    throw error
                }
            }
            try await client.writeFile(level: level, minTXID: first.minTXID, maxTXID: last.maxTXID, contents: .file(path: output), createdAt: Date(timeIntervalSince1970: Double(header.timestamp) / 1000))
            requests += 1
        } catch {
            try? await BlockingPool.shared.run { try Staging.remove(scratch) }
            throw error
        }
        try await BlockingPool.shared.run { try Staging.remove(scratch) }
        logger.event(.compactionDone, level: .debug, ["db": "\(replicator.config.path)", "replica": "\(config.name)", "level": "\(level)", "files": "\(run.count)", "max_txid": "\(LTXNaming.hex(last.maxTXID))"])
    }

    /// The files to merge: starting at the lowest MinTXID above `floor`, each
    /// next file the one that extends the covered range furthest (the widest
    /// when several start within it), so files covered by a wider one (a
    /// retried upload merged as one file next to its single-transaction
    /// parts) are skipped instead of stopping the run. Stops at a gap.
    static func contiguousCover(_ files: [LTXFileInfo], above floor: UInt64) -> [LTXFileInfo] {
        let candidates = files.filter { $0.minTXID > floor }
        guard let start = candidates.map(\.minTXID).min() else { return [] }
        var run: [LTXFileInfo] = []
        var covered = start - 1
        while covered < LTXNaming.maxTXID {
            let next = candidates.filter { $0.minTXID <= covered + 1 && $0.maxTXID > covered }
                .max { ($0.maxTXID, $1.minTXID) < ($1.maxTXID, $0.minTXID) }
            guard let next else { break }
            run.append(next)
            covered = next.maxTXID
        }
        return run
    }

    /// Per-transaction files stay for `l0Retention` after L1 covers them,
    /// then go; the newest L0 file always stays (start-up reads its header).
    func retainLevel0(now: Date) async throws {
        let l1max = try await client.listFiles(level: 1, exactTimestamps: false).map(\.maxTXID).max() ?? 0
        let l0 = try await client.listFiles(level: 0, exactTimestamps: false)
        requests += 2
        guard let newest = l0.max(by: { $0.maxTXID < $1.maxTXID }) else { return }
        let cutoff = now.addingTimeInterval(-replicator.config.l0Retention.seconds)
        let doomed = l0.filter { $0.maxTXID <= l1max && $0.createdAt < cutoff && $0 != newest }
        guard !doomed.isEmpty else { return }
        try await client.deleteFiles(doomed)
        requests += 1
        logger.event(.retentionApplied, level: .debug, ["db": "\(replicator.config.path)", "replica": "\(config.name)", "level": "0", "files": "\(doomed.count)"])
    }

    /// The marker's bytes last found to be this session's (a file replica's
    /// marker is read every round: the same bytes need no second decode).
    private var markerSeenOurs: (bytes: [UInt8], history: String)?

    private func markerIsOurs(_ bytes: [UInt8], history: String) -> Bool {
        if let seen = markerSeenOurs, seen.history == history, seen.bytes == bytes { return true }
        guard ReplicaHistory.isOurs(bytes, history: history) else { return false }
        markerSeenOurs = (bytes, history)
        return true
    }

    /// A `shipAll` is under way (it may be suspended): a pass does not ship
    /// to this replica itself meanwhile.
    private var shipping = false

    /// Called by the pass that found new files, on the worker's thread: a
    /// healthy file replica with nothing special to do (no discovery, no
    /// lease renewal due, no snapshot, nothing staged) gets them written here
    /// and now, with no wake-up of the shipper's task. Returns false, having
    /// written nothing or only some of them, whenever the shipper's own task
    /// must do it (it then finds the rest pending and reports failures).
    func shipInline() -> Bool {
        guard !shipping, failures == 0, foreignWriter == nil, config.syncInterval == .zero,
            let file = client as? FileReplicaClient, let position, let history, history == replicator.historyID,
            let renewed = lastRenewal, ContinuousClock.now - renewed < ReplicaHistory.leaseInterval
        else { return false }
        do {
            // The marker is read before each round, as `checkMarkerStillOurs` does.
            guard let bytes = try file.readMarkerNow(), markerIsOurs(bytes, history: history) else { return false }
            lastMarkerCheck = .now
            let work = try replicator.assumeIsolated { try $0.work(after: position, history: history) }
            switch work {
            case .none:
                return true
            case .snapshot:
                return false
            case .files(let files):
                let ready = files.filter { $0.info.maxTXID > position }
                guard !ready.isEmpty, ready.allSatisfy({ $0.memoryBytes > 0 }) else { return false }
                try write(ready, to: file)
            }
            let all = positions.set(config.name, self.position ?? 0)
            replicator.assumeIsolated { $0.acknowledge(allPositions: all) }
            return true
        } catch {
            return false
        }
    }

    /// Writes in-memory files to a file replica here and now (one directory
    /// fsync for all of them) and counts them stored.
    private func write(_ files: [PendingLTX], to file: FileReplicaClient) throws {
        try file.writeNow(files.map { (info: $0.info, contents: $0.payload) })
        requests += files.count
        bytesShipped += files.reduce(0) { $0 + $1.info.size }
        if let last = files.last { stored(last.info.maxTXID) }
    }

    /// Ships everything pending, retrying with backoff while the replica fails.
    func shipAll(maxAttempts: Int = .max) async {
        shipping = true
        defer { shipping = false }
        var attempt = 0
        while attempt < maxAttempts {
            do {
                try await shipOnce()
                return
            } catch {
                attempt += 1
                failures += 1
                errors += 1
                lastError = "\(error)"
                logger.event(.replicaSyncFailed, level: failures == 1 ? .warning : .debug, ["db": "\(replicator.config.path)", "replica": "\(config.name)", "error": "\(error)", "failures": "\(failures)"])
                if Task.isCancelled || attempt >= maxAttempts { return }
                let base = min(30.0, 0.1 * pow(2.0, Double(min(attempt, 10))))
                try? await Task.sleep(for: .milliseconds(Int64(base * 1000 * Double.random(in: 0.5...1.0))))
                if Task.isCancelled { return }
            }
        }
    }

    private func shipOnce() async throws {
        if position == nil { _ = try await discover() }
        try await checkMarkerStillOurs()
        while let current = position {
            let ours = await replicator.holdsThisHistory(history, at: current)
            let work = try await replicator.work(after: current, history: history)
            // A replica that holds the resumed history's states is labelled
            // before the session's files go on top; any other replica only
            // once it holds a complete state of this history.
            if ours { try await adoptHistory() }
            switch work {
            case .none:
                return
            case .files(let files):
                let batches = Self.batches(files.filter { $0.info.maxTXID > (position ?? 0) }, merge: config.syncInterval > .zero)
                if let file = client as? FileReplicaClient, batches.allSatisfy({ $0.count == 1 && $0[0].memoryBytes > 0 }) {
                    // A file replica: everything found in this pass is written
                    // here and now, one directory fsync for all of it (full
                    // images, staged files of any size, go by the BlockingPool).
                    try write(batches.compactMap(\.first), to: file)
                    break
                }
                for batch in batches {
                    // (Merging decodes and re-encodes: off the cooperative pool.)
                    let (info, payload) = try batch.count == 1 ? (batch[0].info, batch[0].payload) : await BlockingPool.shared.run { try Self.merged(batch) }
                    try await store(info, payload)
                    stored(info.maxTXID)
                }
            case .snapshot(let snap):
                try await store(snap.info, .file(path: snap.path))
                stored(snap.info.maxTXID)
            }
            try await adoptHistory()
            let all = positions.set(config.name, position ?? 0)
            await replicator.acknowledge(allPositions: all)
        }
    }

    /// Largest merged upload.
    static let batchLimit = 64 << 20

    /// Groups pending files for upload. A replica with a `sync-interval`
    /// (S3, SFTP: each file is a request) gets the transactions that arrived
    /// during the interval as one L0 file spanning their TXIDs — one request
    /// per interval instead of one per transaction, at the price of
    /// point-in-time granularity of one upload on that replica. Full images
    /// (staged files) always go alone; so does everything when `merge` is off.
    static func batches(_ files: [PendingLTX], merge: Bool) -> [[PendingLTX]] {
        guard merge else { return files.map { [$0] } }
        var out: [[PendingLTX]] = []
        var current: [PendingLTX] = []
        var bytes = 0
        func generation(_ f: PendingLTX) -> [UInt32]? {
            guard case .bytes(let b) = f.payload, let h = try? LTXHeader.decode(Array(b.prefix(LTXHeader.size))) else { return nil }
            return [h.walSalt1, h.walSalt2]
        }
        for f in files {
            let mergeable = f.info.level == 0 && f.memoryBytes > 0
            // One batch per WAL generation, so the merged file keeps its WAL
            // range (what a restart resumes from).
            if mergeable, let last = current.last, last.info.maxTXID + 1 == f.info.minTXID, bytes + f.memoryBytes <= batchLimit,
                generation(last) == generation(f)
            {
                current.append(f)
                bytes += f.memoryBytes
                continue
            }
            if !current.isEmpty { out.append(current) }
            current = [f]
            bytes = f.memoryBytes
            if !mergeable {
                out.append(current)
                current = []
                bytes = 0
            }
        }
        if !current.isEmpty { out.append(current) }
        return out
    }

    /// One L0 file for a batch of consecutive per-transaction files.
    static func merged(_ batch: [PendingLTX]) throws -> (LTXFileInfo, LTXPayload) {
        guard let first = batch.first, let last = batch.last else { throw LTXError("batch", "nothing to merge") }
        let inputs = batch.map { f -> (name: String, bytes: [UInt8]) in
            if case .bytes(let b) = f.payload { return ("\(f.info)", b) }
            return ("\(f.info)", [])
        }
        let sink = LTXMemorySink()
        _ = try LTXCompactor.merge(inputs, into: sink, keepWALRange: true)
        let info = LTXFileInfo(level: 0, minTXID: first.info.minTXID, maxTXID: last.info.maxTXID, size: Int64(sink.bytes.count), createdAt: last.info.createdAt)
        return (info, .bytes(sink.bytes))
    }

    /// Writes one LTX file to the replica and counts the request and bytes.
    private func store(_ info: LTXFileInfo, _ payload: LTXPayload) async throws {
        try await client.writeFile(level: info.level, minTXID: info.minTXID, maxTXID: info.maxTXID, contents: payload, createdAt: info.createdAt)
        requests += 1
        bytesShipped += info.size
    }

    private func stored(_ txid: UInt64) {
        position = txid
        lastSync = Date()
        if failures > 0 {
            logger.event(.replicaRecovered, ["db": "\(replicator.config.path)", "replica": "\(config.name)", "failures": "\(failures)"])
        }
        failures = 0
        lastError = nil
        renewalFailing = false
    }

    /// Writes a level-9 snapshot now (on schedule), then applies retention.
    func shipSnapshot(_ snap: SnapshotFile) async throws {
        // Only onto this session's history: a replica not discovered yet, or
        // of another history, gets its base from `shipOnce`.
        guard let position, await replicator.holdsThisHistory(history, at: position) else { return }
        try await adoptHistory()
        try await store(snap.info, .file(path: snap.path))
        try await enforceRetention()
    }

    /// Deletes what no restore point inside the retention window needs: the
    /// newest snapshot taken before the window opened is the base for its
    /// earliest points, so it stays, and everything it covers goes. The
    /// newest file of each level always stays (the next start-up reads it).
    func enforceRetention(now: Date = Date()) async throws {
        let windowStart = now.addingTimeInterval(-config.retention.seconds)
        let snapshots = try await client.listFiles(level: LTXNaming.snapshotLevel, exactTimestamps: true)
        requests += 1
        guard let base = snapshots.last(where: { $0.createdAt <= windowStart }) else { return }
        var doomed = snapshots.filter { $0.maxTXID < base.maxTXID }
        for level in 0..<LTXNaming.snapshotLevel {
            let files = try await client.listFiles(level: level, exactTimestamps: false)
            requests += 1
            guard let newest = files.max(by: { $0.maxTXID < $1.maxTXID }) else { continue }
            doomed += files.filter { $0.maxTXID <= base.maxTXID && $0 != newest }
        }
        guard !doomed.isEmpty else { return }
        try await client.deleteFiles(doomed)
        requests += 1
        logger.event(.retentionApplied, ["db": "\(replicator.config.path)", "replica": "\(config.name)", "files": "\(doomed.count)", "base_txid": "\(LTXNaming.hex(base.maxTXID))"])
    }

    func status() async -> ReplicaStatus {
        let oldest = await replicator.oldestUnshipped(after: position ?? 0)
        let lag = oldest.map { max(0, Int64(Date().timeIntervalSince($0) * 1000)) } ?? 0
        let state: String
        if position == nil && lastError == nil {
            state = "Starting"
        } else if failures > 0 || position == nil {
            state = "Failing"
        } else if lag > max(1000, config.syncInterval.milliseconds * 2 + 1000) {
            state = "Lagging"
        } else {
            state = "Syncing"
        }
        return ReplicaStatus(
            name: config.name, type: config.target.typeName, destination: config.target.destination, state: state,
            position: position.map(LTXNaming.hex), lagMs: lag, lastSync: lastSync.map(Timestamps.iso8601),
            error: lastError, consecutiveFailures: failures, requests: requests, bytes: bytesShipped, errors: errors)
    }
}

/// Every replica's position, so the replicator can drop what all have.
/// (A lock, not an actor: the shippers that share it run on one worker
/// thread, and asking an actor would hop off it and back for every file.)
final class PositionBook: @unchecked Sendable {
    private let lock = NSLock()
    private var positions: [String: UInt64] = [:]

    init() {}

    @discardableResult
    func set(_ name: String, _ position: UInt64) -> [UInt64] {
        lock.withLock {
            positions[name] = position
            return Array(positions.values)
        }
    }
}
