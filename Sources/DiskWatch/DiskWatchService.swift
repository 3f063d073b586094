import AsyncAlgorithms
import Foundation
import Logging
import Platform
import ServiceLifecycle
import Synchronization

/// One watched filesystem as `guardian status` shows it (snake_case keys in
/// the JSON document: `mount_point`, `used_percent`, `forecast_seconds_to_full`, ...).
public struct MountStatus: Codable, Sendable, Equatable {
    public var mountPoint: String
    /// The watched paths on this filesystem (databases, replica directories, log directories, ...).
    public var paths: [String]
    public var totalBytes: Int64
    public var usedBytes: Int64
    public var availableBytes: Int64
    /// Used bytes as df shows them: used / (used + available), in percent.
    public var usedPercent: Double
    /// nil on filesystems without an inode limit.
    public var inodesPercent: Double?
    /// Inode counts (statvfs f_files, used, f_favail); nil without an inode limit.
    public var inodesTotal: Int64?
    public var inodesUsed: Int64?
    public var inodesAvailable: Int64?
    /// Seconds until full at the recent growth rate; nil when not growing.
    public var forecastSecondsToFull: Double?
    public var level: DiskLevel
    /// The ballast when it lives on this filesystem.
    public var ballast: BallastStatus?
    /// The newest rotation of a log on this filesystem (RFC 3339).
    public var lastRotation: String?

    public init(
        mountPoint: String, paths: [String], totalBytes: Int64, usedBytes: Int64, availableBytes: Int64,
        usedPercent: Double, inodesPercent: Double?, forecastSecondsToFull: Double?, level: DiskLevel,
        ballast: BallastStatus?, lastRotation: String?,
        inodesTotal: Int64? = nil, inodesUsed: Int64? = nil, inodesAvailable: Int64? = nil
    ) {
        self.inodesTotal = inodesTotal
        self.inodesUsed = inodesUsed
        self.inodesAvailable = inodesAvailable
        self.mountPoint = mountPoint
        self.paths = paths
        self.totalBytes = totalBytes
        self.usedBytes = usedBytes
        self.availableBytes = availableBytes
        self.usedPercent = usedPercent
        self.inodesPercent = inodesPercent
        self.forecastSecondsToFull = forecastSecondsToFull
        self.level = level
        self.ballast = ballast
        self.lastRotation = lastRotation
    }
}

extension MountStatus {
    /// One line for `guardian status`:
    /// `/data  used 82.1 %  inodes 3.0 %  full in 2h10m  [warn]  ballast present  rotated 2026-11-25T08:00:00.000Z`.
    public var summary: String {
        var line = "\(mountPoint)  used \(String(format: "%.1f", usedPercent)) %"
        if let inodesPercent { line += "  inodes \(String(format: "%.1f", inodesPercent)) %" }
        line += "  " + (forecastSecondsToFull.map { "full in \(Units.formatDuration(.seconds($0)))" } ?? "not growing")
        line += "  [\(level.rawValue)]"
        if let ballast { line += "  ballast \(ballast.state)" }
        if let lastRotation { line += "  rotated \(lastRotation)" }
        return line
    }
}

/// The disk guardian: samples every watched filesystem each `interval`
/// (statvfs, bytes and inodes, deduplicated by device), keeps a short
/// history and forecasts time-to-full, tracks the warn/critical/emergency
/// levels with hysteresis, and climbs the cleanup ladder when a level is
/// reached (or a forecast to full is shorter than `forecastHorizon`, or a
/// database's filesystem has less free than `databaseHeadroom`): see
/// `DiskJanitor.Step` for the order. Checks each log's `size`/`maxsize` at
/// every sample, runs the logs' own schedule every `rotateInterval`, and
/// recreates the ballast once there is room again.
///
/// The loop itself only samples (on `BlockingPool`) and decides; file work
/// runs on the disk thread, one job at a time, while sampling continues. If
/// a filesystem reaches emergency while a long job (a big gzip) is running,
/// the loop truncates the fastest-growing log to its tail itself, at once
/// (and releases the ballast only when there is no log to truncate).
///
/// Every level change, action and freed byte is logged as an event (see
/// `DiskEvents.swift`) and passed to `onEvent`; after every sample the
/// status of each filesystem is passed to `onStatus`.
public struct DiskWatchService: Service {
    let config: DiskConfig
    let protectedPaths: [String]
    let extraWatchPaths: [String]
    let stateDir: String
    let logger: Logger
    let onStatus: @Sendable ([MountStatus]) async -> Void
    let onEvent: @Sendable (DiskEvent) async -> Void
    let executor: ThreadExecutor?

    /// - Parameters:
    ///   - config: the `disk:` section.
    ///   - protectedPaths: the databases (their `-wal`, `-shm` and `-journal`
    ///     are protected too, whether listed or not); never touched.
    ///   - extraWatchPaths: paths whose filesystems are watched besides the
    ///     configured ones (each database and replica directory).
    ///   - stateDir: where the rotation state (`disk-rotation.json`) and its lock live.
    ///   - onStatus: called after every sample with one entry per filesystem.
    ///   - onEvent: called for every event (level changes, actions, bytes freed, problems).
    public init(
        config: DiskConfig, protectedPaths: [String], extraWatchPaths: [String], stateDir: String, logger: Logger,
        onStatus: @escaping @Sendable ([MountStatus]) async -> Void,
        onEvent: @escaping @Sendable (DiskEvent) async -> Void
    ) {
        self.init(
            config: config, protectedPaths: protectedPaths, extraWatchPaths: extraWatchPaths, stateDir: stateDir,
            logger: logger, executor: nil, onStatus: onStatus, onEvent: onEvent)
    }

    /// Tests give each service its own disk thread.
    init(
        config: DiskConfig, protectedPaths: [String], extraWatchPaths: [String], stateDir: String, logger: Logger,
        executor: ThreadExecutor?,
        onStatus: @escaping @Sendable ([MountStatus]) async -> Void,
        onEvent: @escaping @Sendable (DiskEvent) async -> Void
    ) {
        self.config = config
        self.protectedPaths = protectedPaths
        self.extraWatchPaths = extraWatchPaths
        self.stateDir = stateDir
        self.logger = logger
        self.executor = executor
        self.onStatus = onStatus
        self.onEvent = onEvent
    }

    /// The paths sampled for the databases: each database's own path, but a
    /// directory holding more than `perDirectory` of them (a `dir:` entry's
    /// tenants) is sampled once, as the directory, instead of a stat per
    /// database every second (1,000 stats a second for 1,000 tenants). A
    /// database that is a mount point of its own inside such a directory
    /// is then sampled as its directory's filesystem.
    static func sampled(_ databases: [String], perDirectory: Int = 8) -> [String] {
        var byDirectory: [String: [String]] = [:]
        var order: [String] = []
        for path in databases {
            let dir = (path as NSString).deletingLastPathComponent
            if byDirectory[dir] == nil { order.append(dir) }
            byDirectory[dir, default: []].append(path)
        }
        return order.flatMap { dir -> [String] in
            let paths = byDirectory[dir] ?? []
            return paths.count > perDirectory ? [dir] : paths
        }
    }

    /// Per filesystem, what the loop remembers between samples.
    struct Track {
        var history: UsageHistory
        var level: DiskLevel = .normal
        /// The level of the last cleanup run, and the lowest usage seen since:
        /// a new run starts when a higher level is reached or usage has
        /// grown `rerunStep` points above that low.
        var cleanedAt: DiskLevel = .normal
        var lowSinceCleanup: Double = 0
        var forecastWarned = false
        var last: UsageSample
    }

    /// Shared between the loop and the job it started.
    final class JobBox: Sendable {
        private let state = Mutex<(busy: Bool, reports: [DiskJanitor.Report])>((false, []))

        func tryStart() -> Bool {
            state.withLock { s in
                guard !s.busy else { return false }
                s.busy = true
                return true
            }
        }

        func finish(_ report: DiskJanitor.Report) {
            state.withLock {
                $0.busy = false
                $0.reports.append(report)
            }
        }

        var isBusy: Bool { state.withLock { $0.busy } }

        func takeReports() -> [DiskJanitor.Report] {
            state.withLock { s in
                defer { s.reports.removeAll() }
                return s.reports
            }
        }
    }

    func emit(_ event: DiskEvent) async {
        event.log(to: logger)
        await onEvent(event)
    }

    public func run() async throws {
        let stop = StopSignal()
        try await withGracefulShutdownHandler {
            try await runLoop(stop: stop)
        } onGracefulShutdown: {
            stop.stop()
        }
    }

    private func runLoop(stop: StopSignal) async throws {
        let protected = ProtectedFiles(protectedPaths)
        let policy = LevelPolicy(config)
        let (config, protectedPaths) = (self.config, self.protectedPaths)
        for problem in await BlockingPool.shared.run({ config.problems(protectedPaths: protectedPaths) }) { await emit(problem.event) }
        let ballast = config.ballast.map { Ballast(config: $0, protected: protected) }
        let janitor = DiskJanitor(config: config, protected: protected, ballast: ballast, stateDir: stateDir, stop: stop, executor: executor)
        let watchPaths = config.watchPaths(extra: Self.sampled(protectedPaths) + extraWatchPaths)
        let mounts = MountTable()
        let jobs = JobBox()
        let window = config.forecastWindow.seconds
        let capacity = min(3600, Int(window / max(config.interval.seconds, 0.01)) + 2)
        let rerunStep = max(1.0, config.hysteresis / 2)

        var tracks: [UInt64: Track] = [:]
        var failing: Set<String> = []
        var lastRotation: [UInt64: Date] = [:]
        var hasPending = false
        var lastScheduled = ContinuousClock.now
        var lastPendingRetry = ContinuousClock.now
        var lastBallastCheck = ContinuousClock.now - .seconds(3600)
        var growth = LogWatch.Growth()
        /// Logs over their size whose rotation was asked for and not yet seen
        /// done: asked again only after `rotateInterval` (a rotation that
        /// fails, e.g. dateext's once a day, is not retried every second).
        var sizeAsked: [String: ContinuousClock.Instant] = [:]
        let databaseDevices = await BlockingPool.shared.run { LogWatch.databaseDevices(protected) }
        let horizon = config.forecastHorizon
        let fastPace = max(config.interval / 10, .milliseconds(100))

        let startReport = await janitor.start()
        for e in startReport.events { await emit(e) }
        lastRotation = startReport.lastRotation

        try await withThrowingDiscardingTaskGroup { group in
            func startJob(_ job: @escaping @Sendable () async -> DiskJanitor.Report) -> Bool {
                guard jobs.tryStart() else { return false }
                group.addTask {
                    let report = await job()
                    for e in report.events { await emit(e) }
                    jobs.finish(report)
                }
                return true
            }

            // The first scheduled pass at once: it records first-seen logs.
            _ = startJob { await janitor.scheduled() }

            let ticks = AsyncTimerSequence(interval: config.interval, clock: .continuous).cancelOnGracefulShutdown()
            var iterator = ticks.makeAsyncIterator()
            while true {
                if stop.isStopped { break }
                for report in jobs.takeReports() {
                    lastRotation.merge(report.lastRotation) { max($0, $1) }
                    hasPending = report.hasPending
                    for e in report.events where e.event == .logRotated { if let log = e.metadata["log"] { sizeAsked[log] = nil } }
                }

                // 1. Sample (the filesystems, and the size of every configured log).
                let rules = config.logs
                let (result, ballastDevice, logs) = await BlockingPool.shared.run {
                    (UsageSampler.sample(paths: watchPaths, mounts: mounts), ballast?.device,
                     rules.isEmpty ? [] : LogWatch.scan(rules, protected: protected))
                }
                growth.update(logs, at: ContinuousClock.now)
                if !sizeAsked.isEmpty {
                    let present = Set(logs.map(\.path))
                    sizeAsked = sizeAsked.filter { present.contains($0.key) }
                }
                var hurry = false
                let nowFailing = Set(result.failures.map(\.path))
                for failure in result.failures where !failing.contains(failure.path) {
                    await emit(DiskEvent(.diskSampleFailed, level: .error, ["path": failure.path, "error": "\(failure.error)"]))
                }
                failing = nowFailing

                var statuses: [MountStatus] = []
                var cleanupWanted: (sample: UsageSample, level: DiskLevel, forecast: Bool)?
                for sample in result.samples {
                    var track = tracks[sample.device] ?? Track(history: UsageHistory(capacity: capacity), last: sample)
                    track.history.append(sample)
                    track.last = sample
                    let forecast = track.history.secondsToFull(
                        availableBytes: sample.availableBytes,
                        availableInodes: sample.totalInodes > 0 ? sample.availableInodes : nil, window: window)

                    // What grows fastest here: named in the level and forecast
                    // events (and so in the event log and a post-mortem).
                    var grower: [String: String] = [:]
                    if let top = logs.filter({ $0.device == sample.device }).max(by: { (growth.rates[$0.path] ?? 0) < (growth.rates[$1.path] ?? 0) }),
                        let rate = growth.rates[top.path], rate > 0
                    {
                        grower = ["growing_log": top.path, "growing_log_bytes": "\(top.size)", "growing_log_bytes_per_second": String(format: "%.0f", rate)]
                    }

                    // 2. Levels, with hysteresis.
                    let level = policy.next(from: track.level, percent: sample.percent)
                    if level != track.level {
                        await emit(DiskEvent(.diskLevelChanged, level: Self.logLevel(for: level, rising: level > track.level), grower.merging([
                            "mount": sample.mountPoint, "from": track.level.rawValue, "to": level.rawValue,
                            "used_percent": String(format: "%.2f", sample.bytesPercent),
                            "inodes_percent": sample.inodesPercent.map { String(format: "%.2f", $0) } ?? "n/a",
                            "available_bytes": "\(sample.availableBytes)",
                            "forecast_seconds": forecast.map { String(format: "%.0f", $0) } ?? "none",
                        ]) { $1 }))
                        if level == .normal { track.cleanedAt = .normal }
                        track.level = level
                    }
                    if let forecast, forecast < config.forecastWarning.seconds {
                        if !track.forecastWarned {
                            track.forecastWarned = true
                            await emit(DiskEvent(.diskFillForecast, level: .warning, grower.merging([
                                "mount": sample.mountPoint, "forecast_seconds": String(format: "%.0f", forecast),
                                "used_percent": String(format: "%.2f", sample.percent),
                            ]) { $1 }))
                        }
                    } else if track.forecastWarned, forecast == nil || forecast.map({ $0 > 2 * config.forecastWarning.seconds }) == true {
                        track.forecastWarned = false
                        await emit(DiskEvent(.diskFillForecastCleared, [
                            "mount": sample.mountPoint, "forecast_seconds": forecast.map { String(format: "%.0f", $0) } ?? "none",
                            "used_percent": String(format: "%.2f", sample.percent),
                        ]))
                    }

                    // 3. Does this filesystem need the cleanup ladder? A short
                    // forecast escalates like a level: below the horizon the
                    // warn ladder, below a tenth of it the critical one.
                    var effective = track.level
                    if horizon > .zero, let forecast {
                        if forecast < (horizon / 10).seconds {
                            effective = max(effective, .critical)
                        } else if forecast < horizon.seconds {
                            effective = max(effective, .warn)
                        }
                    }
                    // Less free than the database needs for its WAL and a
                    // checkpoint: the critical ladder, whatever the percentage.
                    if config.databaseHeadroom > 0, databaseDevices.contains(sample.device),
                        sample.availableBytes < config.databaseHeadroom
                    {
                        effective = max(effective, .critical)
                    }
                    if effective >= .critical { hurry = true }
                    if effective == .normal { track.cleanedAt = .normal }
                    if effective >= .warn {
                        track.lowSinceCleanup = min(track.lowSinceCleanup, sample.percent)
                        let due = effective > track.cleanedAt || sample.percent >= track.lowSinceCleanup + rerunStep
                        if due, cleanupWanted.map({ effective > $0.level }) ?? true {
                            cleanupWanted = (sample, effective, effective > track.level)
                        }
                    }
                    // The emergency fast path: a long job is running. The
                    // fastest-growing log is truncated to its tail first (the
                    // ballast released first would only feed it); the ballast
                    // goes when there is no log to truncate.
                    if track.level == .emergency, jobs.isBusy {
                        let (mountPoint, device, rates, probe, paths) = (sample.mountPoint, sample.device, growth.rates, sample.probe, sample.paths)
                        let emergency = policy.threshold(.emergency)
                        let truncated = await BlockingPool.shared.run {
                            LogWatch.emergencyTruncate(
                                rules: rules, protected: protected, device: device, mount: mountPoint, rates: rates,
                                databaseDevices: databaseDevices, reason: "emergency level reached while a cleanup job was running",
                                needed: {
                                    UsageSampler.read(path: probe, device: device, mountPoint: mountPoint, paths: paths).map { $0.percent >= emergency } ?? true
                                })
                        }
                        for e in truncated { await emit(e) }
                        if !truncated.contains(where: { $0.event == .logEmergencyTruncated }), let ballast, ballast.state == .present,
                            ballastDevice == sample.device,
                            let e = await BlockingPool.shared.run({ ballast.release(reason: "emergency level reached while a cleanup job was running", mount: mountPoint) })
                        {
                            await emit(e)
                        }
                    }
                    tracks[sample.device] = track

                    statuses.append(MountStatus(
                        mountPoint: sample.mountPoint, paths: sample.paths, totalBytes: sample.totalBytes,
                        usedBytes: sample.usedBytes, availableBytes: sample.availableBytes,
                        usedPercent: (sample.bytesPercent * 100).rounded() / 100,
                        inodesPercent: sample.inodesPercent.map { ($0 * 100).rounded() / 100 },
                        forecastSecondsToFull: forecast.map { $0.rounded() },
                        level: track.level,
                        ballast: ballast.flatMap { ballastDevice == sample.device ? $0.status : nil },
                        lastRotation: lastRotation[sample.device].map(Timestamps.iso8601),
                        inodesTotal: sample.totalInodes > 0 ? sample.totalInodes : nil,
                        inodesUsed: sample.totalInodes > 0 ? sample.usedInodes : nil,
                        inodesAvailable: sample.totalInodes > 0 ? sample.availableInodes : nil))
                }

                // 4. Start at most one job: cleanup first, then logs past their
                // size (looked at every interval, not only on the schedule),
                // then the schedule, then postponed compressions, then the ballast.
                let now = ContinuousClock.now
                let oversized = logs.filter { e in
                    guard let limit = LogWatch.sizeThreshold(rules[e.rule]), e.size >= limit else { return false }
                    return sizeAsked[e.path].map { now - $0 >= config.rotateInterval } ?? true
                }
                if let wanted = cleanupWanted {
                    let (sample, level, rates, forecast) = (wanted.sample, wanted.level, growth.rates, wanted.forecast)
                    if startJob({ await janitor.relieve(mount: sample, level: level, policy: policy, growth: rates, forecastDriven: forecast) }) {
                        tracks[sample.device]?.cleanedAt = level
                        tracks[sample.device]?.lowSinceCleanup = sample.percent
                    }
                } else if !oversized.isEmpty {
                    if startJob({ await janitor.scheduled() }) {
                        for e in oversized { sizeAsked[e.path] = now }
                        lastScheduled = now
                    }
                } else if now - lastScheduled >= config.rotateInterval {
                    if startJob({ await janitor.scheduled() }) { lastScheduled = now }
                } else if hasPending, now - lastPendingRetry >= .seconds(1) {
                    if startJob({ await janitor.retryPending() }) { lastPendingRetry = now }
                } else if let ballast,
                    now - lastBallastCheck >= (ballast.state == .present ? Self.ballastVerifyInterval : Self.ballastCheckInterval),
                    let device = ballastDevice, let track = tracks[device], track.level == .normal
                {
                    let sample = track.last
                    if startJob({ await janitor.maintainBallast(sample: sample, policy: policy) }) { lastBallastCheck = now }
                }

                await onStatus(statuses)
                // A filesystem at critical (or forecast to fill within a tenth of
                // the horizon) is sampled ten times as often (at least every 100 ms).
                if hurry, fastPace < config.interval {
                    let slept = await cancelWhenGracefulShutdown { (try? await Task.sleep(for: fastPace)) != nil }
                    if !slept { break }
                    continue
                }
                if await iterator.next() == nil { break }
            }
            stop.stop()
        }
    }

    /// How often a missing ballast is looked at (creating it when it fits).
    static let ballastCheckInterval: Duration = .seconds(2)
    /// How often a present ballast is checked to still be there.
    static let ballastVerifyInterval: Duration = .seconds(60)

    static func logLevel(for level: DiskLevel, rising: Bool) -> Logger.Level {
        guard rising else { return .notice }
        switch level {
        case .normal: return .notice
        case .warn: return .warning
        case .critical: return .error
        case .emergency: return .critical
        }
    }
}
