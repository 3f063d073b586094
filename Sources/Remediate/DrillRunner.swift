import CSQLite
import Foundation
import Logging
import Platform
import Replication

/// Drills do their blocking work (statvfs, sqlite3, removing the copy) on
/// their own thread, so that a long `integrity_check` neither blocks the
/// cooperative pool nor holds up remediation's checks.
enum DrillPool {
    static let shared = BlockingPool(name: "guardian-drill", threads: 1)
}

/// Lets a cancelled drill (shutdown, Ctrl-C) stop the SQLite statement it
/// runs on `DrillPool` at once (`sqlite3_interrupt`) instead of at the end
/// of its budget. Connections are registered while they are in use, so
/// none is closed while another thread interrupts it.
final class StatementInterrupter: @unchecked Sendable {
    private let lock = NSLock()
    private var open: [ObjectIdentifier: CheckConnection] = [:]
    private var cancelled = false

    /// False when the drill is already cancelled: do not start.
    func register(_ c: CheckConnection) -> Bool {
        lock.withLock {
            guard !cancelled else { return false }
            open[ObjectIdentifier(c)] = c
            return true
        }
    }

    func unregister(_ c: CheckConnection) {
        _ = lock.withLock { open.removeValue(forKey: ObjectIdentifier(c)) }
    }

    func cancel() {
        lock.withLock {
            cancelled = true
            for c in open.values { c.interrupt() }
        }
    }
}

/// Carries out one recovery drill of one replica, the seed's weekly
/// "Automated Recovery Test" done properly:
///
/// 1. plan a restore of the replica's latest point (Replication's public API);
/// 2. check that the scratch filesystem has room for the copy (the size the
///    newest LTX header gives, plus files downloaded ahead for a remote
///    replica, plus a reserve of 5 % of the filesystem) — if not, the drill
///    fails at once without writing anything;
/// 3. restore into a private directory under the scratch directory;
/// 4. `PRAGMA integrity_check` on the copy (opened immutable: nothing is
///    written beside it);
/// 5. the verification queries: `min` on the copy's first column, and
///    `within-live` against the same query on the live database, opened
///    read-only (the live database is never written);
/// 6. remove the copy — always, whatever happened.
///
/// The whole drill runs within `budget`: each step gets what is left of it
/// (the restore is cancelled, SQLite statements are interrupted), and a
/// drill over budget fails with that reason. Recording and alerting are
/// `DrillRecorder`'s.
///
/// The drills of one process take turns (`DrillGate`; the budget starts with
/// the turn), so their copies are never on the scratch filesystem together.
/// A copy directory is named after the database (a hash of its path) and the
/// replica, and holds `.drill.lock`, `flock`ed for the drill's lifetime:
/// `removeStaleCopies` removes only copies whose lock it can take, so never
/// the copy of a drill running in another guardian process. A remote
/// replica is read through connections of the drill's own
/// (`ReplicaClientPurpose.drill`), closed when it ends.
public struct DrillRunner: Sendable {
    public let database: String
    public let config: DrillConfig
    /// Where copies are restored (`scratch-dir`, or `<state-dir>/drills`).
    public let scratchDir: String
    let logger: Logger
    let makeClient: @Sendable (ReplicaConfig) throws -> any ReplicaClient
    /// Whose turn it is among the drills (tests use their own).
    var gate = DrillGate.shared
    /// Test seam: called within the restore step (so within the budget) with
    /// the copy directory, once it exists and is locked.
    var willRestore: (@Sendable (String) async -> Void)?

    /// The lock file of a copy directory.
    static let lockName = ".drill.lock"
    /// A copy directory without a lock file (made by an older guardian, or
    /// an instant before its lock exists) or whose lock is free is left
    /// alone while younger than this: a drill locks its directory at once.
    static let lockGrace: TimeInterval = 60

    /// Files a remote restore downloads ahead (`RestoreOptions.downloadAhead`).
    static let downloadAhead = 4
    /// Space kept free on the scratch filesystem: 5 %, at least 1 MiB.
    static func reserve(totalBytes: Int64) -> Int64 { max(1 << 20, totalBytes / 20) }

    public init(
        database: String, config: DrillConfig, scratchDir: String, logger: Logger,
        makeClient: @escaping @Sendable (ReplicaConfig) throws -> any ReplicaClient = { try ReplicaClients.make($0.target, purpose: .drill) }
    ) {
        self.database = database
        self.config = config
        self.scratchDir = scratchDir
        self.logger = logger
        self.makeClient = makeClient
    }

    /// A step that ends the drill as failed.
    struct Stop: Error {
        let failure: DrillFailure
        let reason: String
    }

    /// Runs the drill of `replica` once no other drill of this process runs.
    /// Never throws: every problem is a FAILED result with its reason; a
    /// cancellation (shutdown), while it waits for its turn too, marks it
    /// interrupted.
    public func run(replica: ReplicaConfig, trigger: DrillTrigger) async -> DrillResult {
        do {
            return try await gate.withTurn { await self.runInTurn(replica: replica, trigger: trigger) }
        } catch {
            var result = DrillResult(
                database: database, replica: replica.name, destination: replica.target.destination, startedAt: Date(), trigger: trigger)
            result.interrupted = true
            logger.event(.drillInterrupted, level: .warning, [
                "db": "\(database)", "replica": "\(replica.name)", "destination": "\(replica.target.destination)",
                "duration_ms": "0", "integrity": "not run", "step": "waiting for another drill of this process",
            ])
            return result
        }
    }

    private func runInTurn(replica: ReplicaConfig, trigger: DrillTrigger) async -> DrillResult {
        // Copies of drills killed earlier go first, so that they do not count against this one's room.
        await removeStaleCopies()
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = start + config.budget
        var result = DrillResult(
            database: database, replica: replica.name, destination: replica.target.destination, startedAt: Date(), trigger: trigger)
        logger.event(.drillStarted, [
            "db": "\(database)", "replica": "\(replica.name)", "destination": "\(replica.target.destination)",
            "trigger": "\(trigger.rawValue)", "budget_ms": "\(config.budget.milliseconds)",
        ])
        var copy: CopyDirectory?
        var client: (any ReplicaClient)?
        do {
            try await drill(replica, into: &result, client: &client, copy: &copy, deadline: deadline)
        } catch let stop as Stop {
            result.failure = stop.failure
            result.reason = stop.reason
        } catch {
            if Task.isCancelled || error is CancellationError {
                result.interrupted = true
            } else {
                result.failure = .restore
                result.reason = "\(error)"
            }
        }
        if let copy { await remove(copy.path, unlocking: copy.lock) }
        if let client { await ReplicaClients.close(client) }
        let elapsed = clock.now - start
        result.durationSeconds = elapsed.seconds
        if Task.isCancelled, result.failure != nil, result.failure != .space {
            // Cut short by a shutdown: the failure is ours, not the replica's.
            result.interrupted = true
        }
        if result.failure == nil, !result.interrupted, elapsed > config.budget {
            result.failure = .budget
            result.reason = "took \(Self.seconds(elapsed)), over the budget of \(Units.formatDuration(config.budget))"
        }
        result.passed = result.failure == nil && !result.interrupted
        var fields: Logger.Metadata = [
            "db": "\(database)", "replica": "\(replica.name)", "destination": "\(replica.target.destination)",
            "duration_ms": "\(elapsed.milliseconds)", "integrity": "\(result.integrity ?? "not run")",
        ]
        if let txid = result.txid { fields["txid"] = "\(LTXNaming.hex(txid))" }
        if let rows = result.rows { fields["rows"] = "\(rows)" }
        if result.interrupted {
            logger.event(.drillInterrupted, level: .warning, fields)
        } else if result.passed {
            logger.event(.drillPassed, fields)
        } else {
            fields["reason"] = "\(result.reason ?? "")"
            fields["failure"] = "\(result.failure?.rawValue ?? "")"
            logger.event(.drillFailed, level: result.failure?.severity == .critical ? .critical : .warning, fields)
        }
        return result
    }

    /// A drill's copy directory and the descriptor holding its lock.
    struct CopyDirectory {
        let path: String
        let lock: Int32
    }

    private func drill(
        _ replica: ReplicaConfig, into result: inout DrillResult, client opened: inout (any ReplicaClient)?, copy: inout CopyDirectory?,
        deadline: ContinuousClock.Instant
    ) async throws {
        let client: any ReplicaClient
        do {
            client = try makeClient(replica)
        } catch {
            throw Stop(failure: .restore, reason: "cannot open the replica: \(error)")
        }
        opened = client
        // 1. What a restore of the latest point would read.
        let plan: RestorePlan
        do {
            plan = try await Self.within(deadline, "listing the replica", budget: config.budget) {
                try await Restorer().plan(client: client, options: RestoreOptions(integrityCheck: .none))
            }
        } catch let e as Stop {
            throw e
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw Stop(failure: .restore, reason: "cannot plan a restore: \(error)")
        }

        // 2. Room for the copy, before anything is written.
        let need = try await estimate(plan, client: client, deadline: deadline)
        let scratch = scratchDir
        let room: (available: Int64, total: Int64)
        do {
            room = try await DrillPool.shared.run { () throws -> (available: Int64, total: Int64) in
                var st = stat()
                if stat(scratch, &st) != 0 {
                    try DurableFile.makeDirectories(scratch)
                    chmod(scratch, 0o700)
                    // Made by `sudo guardian drill`: it belongs to the owner of its
                    // parent (the daemon's user, for <state-dir>/drills), not to root.
                    var parent = stat()
                    if getuid() == 0, stat((scratch as NSString).deletingLastPathComponent, &parent) == 0, parent.st_uid != 0 {
                        _ = chown(scratch, parent.st_uid, parent.st_gid)
                    }
                }
                var fs = statvfs()
                guard statvfs(scratch, &fs) == 0 else { throw SystemError("statvfs", path: scratch) }
                return (Int64(fs.f_bavail) * Int64(fs.f_frsize), Int64(fs.f_blocks) * Int64(fs.f_frsize))
            }
        } catch {
            throw Stop(failure: .space, reason: "cannot use the scratch directory \(scratch): \(error)")
        }
        let reserve = Self.reserve(totalBytes: room.total)
        if need.total + reserve > room.available {
            throw Stop(
                failure: .space,
                reason: "not enough room in \(scratch) for the restored copy: it needs about \(Units.formatBytes(need.total))"
                    + (need.downloads > 0 ? " (\(Units.formatBytes(need.copy)) copy + \(Units.formatBytes(need.downloads)) downloads)" : "")
                    + " and \(Units.formatBytes(reserve)) kept free, \(Units.formatBytes(room.available)) is available;"
                    + " free space there or set the drill's scratch-dir: to a larger filesystem")
        }

        // 3. Restore into a private directory, locked while the drill runs.
        let name = (database as NSString).lastPathComponent
        let prefix = Self.copyPrefix(database: database, replica: replica.name)
        let made: CopyDirectory
        do {
            made = try await DrillPool.shared.run { try Self.makeCopyDirectory(in: scratch, prefix: prefix) }
        } catch {
            throw Stop(failure: .space, reason: "cannot use the scratch directory \(scratch): \(error)")
        }
        copy = made
        let dir = made.path
        let output = dir + "/" + name
        let restored: RestoreResult
        let willRestore = willRestore
        do {
            restored = try await Self.within(deadline, "the restore", budget: config.budget) {
                await willRestore?(dir)
                return try await Restorer().restore(client: client, to: output, options: RestoreOptions(integrityCheck: .none))
            }
        } catch let e as Stop {
            throw e
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw Stop(failure: .restore, reason: "restore failed: \(error)")
        }
        result.txid = restored.txid
        result.restoredTimestamp = restored.timestamp
        result.bytes = restored.bytes

        // 4. integrity_check, on what is left of the budget.
        let budgetLeft = deadline - ContinuousClock.now
        guard budgetLeft > .zero else { throw Self.overBudget("the restore", config.budget) }
        let interrupter = StatementInterrupter()
        let check = await withTaskCancellationHandler {
            await DrillPool.shared.run { Self.integrity(of: output, budget: budgetLeft, interrupter: interrupter) }
        } onCancel: {
            interrupter.cancel()
        }
        try Task.checkCancellation()
        switch check {
        case .ok:
            result.integrity = "ok"
        case .corrupt(let lines):
            result.integrity = lines.prefix(5).joined(separator: "; ")
            throw Stop(failure: .integrity, reason: "integrity_check: \(lines.prefix(3).joined(separator: "; "))")
        case .inconclusive(let why):
            if why == Self.interrupted { throw Self.overBudget("integrity_check", config.budget) }
            throw Stop(failure: .integrity, reason: "integrity_check could not run: \(why)")
        }

        // 5. The verification queries.
        guard !config.queries.isEmpty else { return }
        let queriesLeft = deadline - ContinuousClock.now
        guard queriesLeft > .zero else { throw Self.overBudget("integrity_check", config.budget) }
        let queries = config.queries
        let live = database
        let (outcomes, interrupted) = await withTaskCancellationHandler {
            await DrillPool.shared.run { Self.verify(queries, copy: output, live: live, budget: queriesLeft, interrupter: interrupter) }
        } onCancel: {
            interrupter.cancel()
        }
        try Task.checkCancellation()
        result.queries = outcomes
        result.rows = outcomes.first?.value
        if interrupted { throw Self.overBudget("the queries", config.budget) }
        if let failed = outcomes.first(where: { !$0.passed }) {
            throw Stop(failure: .query, reason: "query \(failed.sql): \(failed.detail ?? "failed")")
        }
    }

    // MARK: - Steps

    /// `drill-<hash of the database path>-<replica>-`: copies of different
    /// databases with replicas of the same name have different names.
    static func copyPrefix(database: String, replica: String) -> String {
        let label = String(replica.map { $0.isLetter || $0.isNumber || $0 == "-" ? $0 : "_" }.prefix(40))
        return "drill-\(Crypto.sha256Hex(database).prefix(8))-\(label)-"
    }

    /// Makes a fresh copy directory and takes its lock (`flock`, held until
    /// `remove(_:unlocking:)`). Blocking.
    static func makeCopyDirectory(in scratch: String, prefix: String) throws -> CopyDirectory {
        var template = Array("\(scratch)/\(prefix)XXXXXX".utf8CString)
        guard let p = mkdtemp(&template) else { throw SystemError("mkdtemp", path: scratch) }
        let dir = String(cString: p)
        let lockPath = dir + "/" + lockName
        let fd = open(lockPath, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        if fd < 0 {
            let error = SystemError("open", path: lockPath)
            rmdir(dir)
            throw error
        }
        while flock(fd, LOCK_EX) != 0 {
            guard errno == EINTR else {
                let error = SystemError("flock", path: lockPath)
                close(fd)
                try? FileManager.default.removeItem(atPath: dir)
                throw error
            }
        }
        return CopyDirectory(path: dir, lock: fd)
    }

    /// The space a restore needs: the database at the planned TXID (from the
    /// newest file's header: commit × page size), plus, for a remote
    /// replica, the largest files that may be downloaded at once. Reading
    /// the header counts against the budget like every other step.
    func estimate(
        _ plan: RestorePlan, client: any ReplicaClient, deadline: ContinuousClock.Instant
    ) async throws -> (copy: Int64, downloads: Int64, total: Int64) {
        var copy: Int64 = 0
        if let last = plan.files.last {
            let bytes: [UInt8]?
            do {
                bytes = try await Self.within(deadline, "reading the newest LTX header", budget: config.budget) {
                    try await client.readPrefix(last, count: LTXHeader.size)
                }
            } catch let e as Stop {
                throw e
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                bytes = nil  // unreadable: estimated below
            }
            if let bytes, let header = try? LTXHeader.decode(bytes) {
                copy = Int64(header.commit) * Int64(header.pageSize)
            }
        }
        if copy == 0 {
            // No readable header: the live database, or the plan's files, whichever is larger.
            let live = database
            let liveSize = await DrillPool.shared.run { () -> Int64 in
                var st = stat()
                return stat(live, &st) == 0 ? Int64(st.st_size) : 0
            }
            copy = max(liveSize, plan.files.reduce(0) { $0 + $1.size })
        }
        var downloads: Int64 = 0
        if !(client is FileReplicaClient) {
            downloads = plan.files.map(\.size).sorted(by: >).prefix(Self.downloadAhead + 1).reduce(0, +)
        }
        return (copy, downloads, copy + downloads)
    }

    static let interrupted = "interrupted"

    /// `PRAGMA integrity_check` on the copy, opened immutable (no -wal or
    /// -shm appears beside it), stopped at `budget`. Blocking.
    static func integrity(of path: String, budget: Duration, interrupter: StatementInterrupter) -> IntegrityVerdict {
        let conn: CheckConnection
        do {
            conn = try CheckConnection(path: immutableURI(path), readOnly: true, uri: true)
        } catch {
            return .inconclusive("\(error)")
        }
        guard interrupter.register(conn) else { return .inconclusive(interrupted) }
        defer { interrupter.unregister(conn) }
        conn.setBudget(budget)
        let (rows, err) = conn.rows("PRAGMA integrity_check(20)")
        if let err {
            if err.isInterrupt {
                let problems = rows.filter { $0 != "ok" }
                return problems.isEmpty ? .inconclusive(interrupted) : .corrupt(problems)
            }
            return IntegrityChecker.classify(err, rows: rows)
        }
        return IntegrityChecker.verdictFrom(rows: rows, interrupted: false)
    }

    /// Runs each query on the copy and, for `within-live`, on the live
    /// database (read-only). Returns every outcome, and whether the budget
    /// ran out. Blocking.
    static func verify(
        _ queries: [DrillQuery], copy: String, live: String, budget: Duration, interrupter: StatementInterrupter
    ) -> ([DrillQueryOutcome], Bool) {
        var outcomes: [DrillQueryOutcome] = []
        let copyConn: CheckConnection
        do {
            copyConn = try CheckConnection(path: immutableURI(copy), readOnly: true, uri: true)
        } catch {
            let q = queries[0]
            return ([DrillQueryOutcome(sql: q.sql, value: nil, live: nil, expectation: expectation(q), passed: false, detail: "cannot open the copy: \(error)")], false)
        }
        guard interrupter.register(copyConn) else { return ([], true) }
        defer { interrupter.unregister(copyConn) }
        copyConn.setBudget(budget)
        var liveConn: CheckConnection?
        var liveError: String?
        defer { if let liveConn { interrupter.unregister(liveConn) } }
        for q in queries {
            var outcome = DrillQueryOutcome(sql: q.sql, value: nil, live: nil, expectation: expectation(q), passed: false, detail: nil)
            switch copyConn.firstInteger(q.sql) {
            case .failure(let e):
                if e.isInterrupt { return (outcomes, true) }
                outcome.detail = "on the restored copy: \(e)"
            case .success(let v):
                outcome.value = v
                var problems: [String] = []
                if let min = q.effectiveMin {
                    if let v, v >= min {} else { problems.append("returned \(v.map(String.init) ?? "no value"), expected at least \(min)") }
                }
                if let percent = q.withinLivePercent {
                    if liveConn == nil, liveError == nil {
                        do {
                            let c = try CheckConnection(path: live, readOnly: true)
                            guard interrupter.register(c) else { return (outcomes, true) }
                            c.setBudget(budget)
                            liveConn = c
                        } catch {
                            liveError = "cannot open the live database read-only: \(error)"
                        }
                    }
                    if let liveConn {
                        switch liveConn.firstInteger(q.sql) {
                        case .failure(let e):
                            if e.isInterrupt { return (outcomes, true) }
                            problems.append("on the live database: \(e)")
                        case .success(let l):
                            outcome.live = l
                            if let problem = compare(copy: v, live: l, percent: percent) { problems.append(problem) }
                        }
                    } else if let liveError {
                        problems.append(liveError)
                    }
                }
                outcome.passed = problems.isEmpty
                outcome.detail = problems.isEmpty ? nil : problems.joined(separator: "; ")
            }
            outcomes.append(outcome)
        }
        return (outcomes, false)
    }

    /// Pure: nil when `copy` is within `percent` % of `live`, else why not.
    static func compare(copy: Int64?, live: Int64?, percent: Double) -> String? {
        guard let copy, let live else {
            return "returned \(copy.map(String.init) ?? "no value") on the copy and \(live.map(String.init) ?? "no value") live"
        }
        let allowed = abs(Double(live)) * percent / 100
        let difference = abs(Double(copy) - Double(live))
        guard difference > allowed else { return nil }
        let off = live == 0 ? "" : String(format: " (%.1f%% off)", difference / abs(Double(live)) * 100)
        return "returned \(copy) on the copy and \(live) live\(off), expected within \(Self.percentText(percent))"
    }

    static func expectation(_ q: DrillQuery) -> String {
        var parts: [String] = []
        if let min = q.effectiveMin { parts.append(">= \(min)") }
        if let p = q.withinLivePercent { parts.append("within \(percentText(p)) of live") }
        return parts.joined(separator: ", ")
    }

    static func percentText(_ p: Double) -> String {
        p == p.rounded() ? "\(Int(p))%" : "\(p)%"
    }

    static func immutableURI(_ path: String) -> String {
        "file:" + (path.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? path) + "?immutable=1"
    }

    static func overBudget(_ step: String, _ budget: Duration) -> Stop {
        Stop(failure: .budget, reason: "over the budget of \(Units.formatDuration(budget)): \(step) did not finish in time")
    }

    static func seconds(_ d: Duration) -> String { String(format: "%.1f s", d.seconds) }

    /// Runs `operation` until `deadline`; past it the operation is cancelled
    /// (and awaited, so that it has cleaned up) and the drill fails over budget.
    static func within<T: Sendable>(
        _ deadline: ContinuousClock.Instant, _ step: String, budget: Duration, _ operation: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask { try await operation() }
            group.addTask {
                try await Task.sleep(until: deadline, clock: .continuous)
                return nil
            }
            defer { group.cancelAll() }
            guard let first = try await group.next() else { throw CancellationError() }
            guard let value = first else { throw overBudget(step, budget) }
            return value
        }
    }

    /// Removes the copies killed drills left behind: the `drill-*`
    /// directories of the scratch directory (of any database) whose lock
    /// can be taken at once — a running drill, of this process or another,
    /// holds its lock — and that are older than `lockGrace` (a drill locks
    /// its directory as soon as it has made it). Returns their paths.
    @discardableResult
    public func removeStaleCopies(now: Date = Date()) async -> [String] {
        let scratch = scratchDir
        let outcome = await DrillPool.shared.run { () -> [(path: String, problem: String?)] in
            let names = (try? FileManager.default.contentsOfDirectory(atPath: scratch)) ?? []
            var removed: [(path: String, problem: String?)] = []
            for name in names.sorted() where name.hasPrefix("drill-") {
                let path = scratch + "/" + name
                var st = stat()
                guard lstat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR,
                    now.timeIntervalSince1970 - Double(st.st_mtim.tv_sec) > Self.lockGrace
                else { continue }
                let fd = open(path + "/" + Self.lockName, O_RDWR | O_CLOEXEC | O_NOFOLLOW)
                if fd >= 0 {
                    // Held: a drill is running in it.
                    guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
                        close(fd)
                        continue
                    }
                } else if errno != ENOENT {
                    continue
                }
                // Removed while locked, so that no drill can take it meanwhile.
                removed.append((path, Self.removeDirectory(path)))
                if fd >= 0 { close(fd) }
            }
            return removed
        }
        for (dir, problem) in outcome {
            logger.event(.internalError, level: .warning, ["what": "removing a drill copy left behind by an earlier run", "path": "\(dir)"])
            if let problem {
                logger.event(.internalError, level: .error, ["what": "removing the drill copy \(dir)", "error": "\(problem)"])
            }
        }
        return outcome.map(\.path)
    }

    /// Removes the drill's directory (the copy, its temp files, its lock
    /// file), then lets go of its lock. Always called.
    func remove(_ dir: String, unlocking lock: Int32) async {
        let problem = await DrillPool.shared.run { () -> String? in
            defer { close(lock) }
            return Self.removeDirectory(dir)
        }
        if let problem {
            logger.event(.internalError, level: .error, ["what": "removing the drill copy \(dir)", "error": "\(problem)"])
        }
    }

    /// Nil when `dir` is gone, else why not. Blocking.
    static func removeDirectory(_ dir: String) -> String? {
        do {
            try FileManager.default.removeItem(atPath: dir)
        } catch {
            if FileManager.default.fileExists(atPath: dir) { return "\(error)" }
        }
        return nil
    }
}
