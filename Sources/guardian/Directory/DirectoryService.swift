import AsyncAlgorithms
import Foundation
import Logging
import Platform
import Remediate
import Replication
import ServiceLifecycle

/// What a directory entry holds at the start of a configuration generation
/// (scanned before the service group runs, so READY waits for these databases).
struct DirectoryDiscovery: Sendable {
    let entry: GuardianConfig.Directory
    /// WAL databases found, sorted.
    let databases: [String]
    /// Files matching the pattern that are not replicated, and why.
    let skipped: [String: String]
    /// The directories to watch.
    let directories: [String]
    /// Databases the configuration lists with `path:` (those entries win).
    let configured: Set<String>

    static func scan(_ entry: GuardianConfig.Directory, configured: Set<String>, logger: Logger) async -> DirectoryDiscovery {
        let (dirs, files, classes) = await BlockingPool.shared.run { () -> ([String], [String], [DirectoryCandidate]) in
            let (dirs, files) = DirectoryScan.walk(entry.spec)
            let unlisted = files.filter { !configured.contains($0) }
            return (dirs, unlisted, unlisted.map(DirectoryScan.classify))
        }
        if dirs.isEmpty {
            logger.event(.directoryWatchFailed, level: .error, ["dir": "\(entry.dir)", "error": "cannot read the directory"])
        }
        var databases: [String] = []
        var skipped: [String: String] = [:]
        for (path, c) in zip(files, classes) {
            if c == .database {
                databases.append(path)
            } else if let reason = c.reason {
                skipped[path] = reason
                logger.event(.directoryFileSkipped, level: .warning, ["db": "\(path)", "reason": "\(reason)"])
            }
        }
        return DirectoryDiscovery(entry: entry, databases: databases, skipped: skipped, directories: dirs, configured: configured)
    }
}

/// A directory entry in `guardian run`: replicates every database the
/// discovery found, each with the services of a configured database
/// (`DatabaseWiring`: replication, remediation; status, metrics and health
/// through the board), and with `watch: true` follows the directory through
/// one `DirectoryWatcher`: a new database is replicated once it is an SQLite
/// database in WAL mode (its first commit), a deleted or renamed one is
/// stopped after a last sync (its replica stays). Drills take a rotating
/// sample of the entry's databases per scheduled run (`DirectoryDrills`).
struct DirectoryService: Service {
    let discovery: DirectoryDiscovery
    let registry: DirectoryRegistry
    var entry: GuardianConfig.Directory { discovery.entry }
    /// Events closer together than this are handled as one batch.
    static let settle: Duration = .milliseconds(50)

    init(discovery: DirectoryDiscovery, wiring: DatabaseWiring) {
        self.discovery = discovery
        registry = DirectoryRegistry(entry: discovery.entry, configured: discovery.configured, wiring: wiring, skipped: discovery.skipped)
    }

    func waitUntilIdle(timeout: Duration, reason: String) async {
        for r in await registry.remediations() { await r.waitUntilIdle(timeout: timeout, reason: reason) }
    }

    func run() async throws {
        let registry = registry
        var watcher: DirectoryWatcher?
        if entry.spec.watch, !discovery.directories.isEmpty {
            do {
                let w = try DirectoryWatcher(spec: entry.spec)
                do {
                    try await BlockingPool.shared.run { [dirs = discovery.directories] in
                        for d in dirs { try w.add(directory: d) }
                    }
                } catch {
                    w.stop()
                    throw error
                }
                watcher = w
            } catch {
                await registry.logWatchFailure(error)
            }
        }
        let watching = watcher
        await registry.setWatcher(watching)
        for path in discovery.databases { await registry.start(path) }
        await registry.publish()
        // Files that appeared between the scan and the watch.
        if watching != nil { await registry.rescan() }

        await withTaskCancellationHandler {
            await withDiscardingTaskGroup { group in
                if let drill = entry.template.drill, !entry.template.replication.replicas.isEmpty {
                    group.addTask { await DirectoryDrills(entry: entry, config: drill, registry: registry).run() }
                }
                if let watcher = watching {
                    // Follows the directory until guardian stops (the watcher's events then end).
                    group.addTask {
                        await withGracefulShutdownHandler {
                            await Self.follow(watcher, registry)
                        } onGracefulShutdown: {
                            watcher.stop()
                        }
                    }
                }
            }
            // Every database's services end with the graceful shutdown.
            await registry.waitForAll()
        } onCancel: {
            watching?.stop()
            Task { await registry.cancelAll() }
        }
    }

    /// Handles the watcher's events in batches until it stops.
    static func follow(_ watcher: DirectoryWatcher, _ registry: DirectoryRegistry) async {
        var batch: [DirectoryWatcher.Event] = []
        let (flushes, flush) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
        let (merged, sink) = AsyncStream.makeStream(of: DirectoryWatcher.Event?.self)
        let pump = Task {
            for await e in watcher.events { sink.yield(e) }
            sink.finish()
        }
        let ticker = Task {
            for await _ in flushes {
                try? await Task.sleep(for: settle)
                sink.yield(nil)
            }
        }
        for await item in merged {
            if let e = item {
                if batch.isEmpty { flush.yield(()) }
                batch.append(e)
            } else if !batch.isEmpty {
                let events = batch
                batch.removeAll()
                await registry.handle(events)
            }
        }
        if !batch.isEmpty { await registry.handle(batch) }
        flush.finish()
        pump.cancel()
        ticker.cancel()
    }
}

/// The databases of one directory entry and their services. One caller
/// (`DirectoryService.follow`) changes the set, so a stop and a start of
/// the same path never overlap.
actor DirectoryRegistry {
    let entry: GuardianConfig.Directory
    let configured: Set<String>
    let wiring: DatabaseWiring
    private var running: [String: Running] = [:]
    private var skipped: [String: String]
    private var watcher: DirectoryWatcher?

    struct Running: Sendable {
        let task: Task<Void, Never>
        let remediation: RemediationService?
    }

    init(entry: GuardianConfig.Directory, configured: Set<String>, wiring: DatabaseWiring, skipped: [String: String]) {
        self.entry = entry
        self.configured = configured
        self.wiring = wiring
        self.skipped = skipped
    }

    var logger: Logger { wiring.logger }

    func setWatcher(_ w: DirectoryWatcher?) { watcher = w }

    func logWatchFailure(_ error: any Error) {
        logger.event(.directoryWatchFailed, level: .error, ["dir": "\(entry.dir)", "error": "\(error)"])
    }

    /// The databases replicated now, sorted.
    func databases() -> [String] { running.keys.sorted() }

    func remediations() -> [RemediationService] { running.values.compactMap(\.remediation) }

    /// Starts replicating `path` with the entry's settings.
    func start(_ path: String) async {
        guard running[path] == nil else { return }
        let made = wiring.services(for: entry.database(at: path), drills: false)
        skipped.removeValue(forKey: path)
        watcher?.setKnown(path, true)
        await wiring.board.addDatabase(path)
        let task = Task {
            await withDiscardingTaskGroup { group in
                group.addTask { try? await made.replication.run() }
                if let r = made.remediation { group.addTask { try? await r.run() } }
            }
        }
        running[path] = Running(task: task, remediation: made.remediation)
        logger.event(.directoryDatabaseAdded, ["db": "\(path)", "dir": "\(entry.dir)"])
    }

    /// How long a stopping database's session gets to finish before it is cancelled.
    static let stopLimit: Duration = .seconds(3)

    /// Stops replicating `paths`, all at once: for each a last sync,
    /// connections closed, then its services end. Replicas are left as they are.
    func stop(_ paths: [String], reason: String) async {
        let stopping = paths.compactMap { p in running.removeValue(forKey: p).map { (p, $0) } }
        let control = wiring.control
        await withDiscardingTaskGroup { group in
            for (path, r) in stopping {
                group.addTask {
                    // The session ends after a final sync and closes what it holds (a
                    // session retrying a missing file notices within monitor-interval) ...
                    await control.pause(path, timeout: Self.stopLimit)
                    // ... then the paused service (and remediation) end.
                    r.task.cancel()
                    await control.resume(path)
                    await r.task.value
                    // Nothing holds the file now: its descriptor may close (a deleted file's space is freed).
                    DatabaseFiles.shared.forget(path)
                }
            }
        }
        for (path, _) in stopping {
            watcher?.setKnown(path, false)
            await wiring.board.removeDatabase(path, loop: DatabaseWiring.loopName(path))
            logger.event(.directoryDatabaseRemoved, ["db": "\(path)", "dir": "\(entry.dir)", "reason": "\(reason)"])
        }
    }

    func handle(_ events: [DirectoryWatcher.Event]) async {
        var paths: Set<String> = []
        for e in events {
            switch e {
            case .changed(let p), .removed(let p): paths.insert(p)
            case .directoryAdded(let d):
                let found = await BlockingPool.shared.run { [spec = entry.spec, watcher] () -> [String] in
                    let (dirs, files) = DirectoryScan.walk(spec, from: d)
                    for sub in dirs { try? watcher?.add(directory: sub) }
                    return files
                }
                paths.formUnion(found)
            case .directoryRemoved(let d):
                watcher?.remove(directory: d)
                let prefix = d + "/"
                paths.formUnion(running.keys.filter { $0.hasPrefix(prefix) })
                for p in skipped.keys where p.hasPrefix(prefix) { skipped.removeValue(forKey: p) }
            case .rootGone:
                logger.event(.directoryWatchFailed, level: .error, ["dir": "\(entry.dir)", "error": "the directory was removed or moved away"])
                paths.formUnion(running.keys)
            case .overflow:
                await rescan()
            }
        }
        await reconcile(paths)
    }

    /// Looks at every file of the entry again (start-up, lost events).
    func rescan() async {
        let files = await BlockingPool.shared.run { [spec = entry.spec, watcher] () -> [String] in
            let (dirs, files) = DirectoryScan.walk(spec)
            for d in dirs { try? watcher?.add(directory: d) }
            return files
        }
        await reconcile(Set(files).union(running.keys))
    }

    /// Brings each path's replication in line with what is on disk now.
    func reconcile(_ paths: Set<String>) async {
        let candidates = paths.filter { !configured.contains($0) && entry.covers($0) }
        guard !candidates.isEmpty else { return }
        let exists = await BlockingPool.shared.run { candidates.filter { access($0, F_OK) == 0 } }
        // Stops first: a renamed database is the same file under a new name,
        // and is only looked at once nothing holds the old one.
        var gone: [String] = []
        for path in candidates.sorted() where running[path] != nil && !exists.contains(path) {
            // Remediation moves a database away while it swaps a copy in.
            if await wiring.control.isPaused(path) { continue }
            gone.append(path)
        }
        await stop(gone, reason: "the file is gone (deleted or renamed)")
        for path in candidates where !exists.contains(path) { skipped.removeValue(forKey: path) }
        let unknown = exists.filter { running[$0] == nil }.sorted()
        if !unknown.isEmpty {
            let classes = await BlockingPool.shared.run { unknown.map(DirectoryScan.classify) }
            for (path, c) in zip(unknown, classes) {
                if c == .database {
                    await start(path)
                } else if let reason = c.reason {
                    if skipped[path] != reason {
                        logger.event(.directoryFileSkipped, level: .warning, ["db": "\(path)", "reason": "\(reason)"])
                    }
                    skipped[path] = reason
                }
            }
        }
        await publish()
    }

    func publish() async {
        await wiring.board.updateDirectory(DirectoryStatus(
            dir: entry.dir, pattern: entry.spec.pattern, recursive: entry.spec.recursive, watch: entry.spec.watch,
            databases: running.count,
            skipped: skipped.keys.sorted().map { DirectoryStatus.Skipped(path: $0, reason: skipped[$0] ?? "") }))
    }

    /// Waits for every database's services (they end on graceful shutdown).
    func waitForAll() async {
        for r in running.values { await r.task.value }
    }

    func cancelAll() {
        for r in running.values { r.task.cancel() }
    }
}
