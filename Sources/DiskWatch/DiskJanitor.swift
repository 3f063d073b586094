import Foundation
import Logging
import Platform

/// Does the disk guardian's file work — rotation, compression, deletion,
/// the ballast — on a dedicated thread (a `ThreadExecutor`), one job at a
/// time, so that gzip and fsync never hold a thread of the cooperative pool
/// and the sampling loop keeps its pace while a long job runs.
actor DiskJanitor {
    /// One disk thread for the whole process.
    static let sharedExecutor = ThreadExecutor(name: "guardian-disk")

    nonisolated let executor: ThreadExecutor
    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    /// What a job did.
    struct Report: Sendable {
        var events: [DiskEvent] = []
        var lastRotation: [UInt64: Date] = [:]
        var hasPending = false
        /// Usage of the relieved filesystem when the job ended.
        var finalPercent: Double?
        var bytesFreed: Int64 { events.reduce(0) { $0 + $1.bytesFreed } }
    }

    /// The escalation ladder. At warn and critical the non-destructive steps
    /// come first; at emergency the fast, certain ones do (deletions beyond
    /// policy and of expired cleanup files take milliseconds, gzip may take
    /// seconds the database does not have), then the emergency truncate of
    /// the fastest-growing log (milliseconds; log lines are cheaper than the
    /// database), then rotation and compression, the oldest archives, and the
    /// ballast last: released earlier it only feeds a runaway writer, which
    /// eats it in a moment; kept, it is the database's reserve once nothing
    /// else can be freed.
    enum Step: String, Sendable, CaseIterable {
        case rotateNow = "rotate_now"
        case compress
        case deleteBeyondPolicy = "delete_beyond_policy"
        case cleanupPaths = "cleanup_paths"
        case emergencyTruncate = "emergency_truncate"
        case releaseBallast = "release_ballast"
        case deleteArchives = "delete_archives"

        static func ladder(for level: DiskLevel, emergencyDeleteArchives: Bool) -> [Step] {
            switch level {
            case .normal: []
            case .warn: [.rotateNow, .compress]
            case .critical: [.rotateNow, .compress, .deleteBeyondPolicy, .cleanupPaths]
            case .emergency:
                [.deleteBeyondPolicy, .cleanupPaths, .emergencyTruncate, .rotateNow, .compress]
                    + (emergencyDeleteArchives ? [.deleteArchives] : []) + [.releaseBallast]
            }
        }
    }

    let config: DiskConfig
    let protected: ProtectedFiles
    let ballast: Ballast?
    let stateDir: String
    let stop: StopSignal
    private let rotator: LogRotator
    private var lockProblemReported = false
    /// When "could not bring usage below the level" was last said, per filesystem.
    private var insufficientReported: [UInt64: (level: DiskLevel, at: ContinuousClock.Instant)] = [:]

    init(config: DiskConfig, protected: ProtectedFiles, ballast: Ballast?, stateDir: String, stop: StopSignal, executor: ThreadExecutor? = nil) {
        self.executor = executor ?? Self.sharedExecutor
        self.config = config
        self.protected = protected
        self.ballast = ballast
        self.stateDir = stateDir
        self.stop = stop
        var options = LogRotator.Options()
        options.statePath = (stateDir as NSString).appendingPathComponent(RotationState.fileName)
        options.stop = stop
        rotator = LogRotator(rules: config.logs, protected: protected, options: options)
    }

    /// The rotation lock, or nil when another guardian holds it (the step is
    /// skipped and tried again on a later tick).
    private func lock(_ events: inout [DiskEvent]) -> (held: RotationLock?, busy: Bool) {
        do {
            let lock = try RotationLock(stateDir: stateDir)
            lockProblemReported = false
            return (lock, false)
        } catch let e as SystemError where e.code == EWOULDBLOCK {
            return (nil, true)
        } catch {
            // No usable state directory: rotate anyway, unlocked, and say so once.
            if !lockProblemReported {
                events.append(DiskEvent(.rotationStateFailed, level: .warning, ["path": stateDir, "error": "\(error)"]))
                lockProblemReported = true
            }
            return (nil, false)
        }
    }

    private func finish(_ report: inout Report) {
        report.events += rotator.takeEvents()
        _ = rotator.takeActions()
        report.lastRotation = rotator.lastRotation
        report.hasPending = !rotator.pendingCompress.isEmpty
    }

    /// Loads the rotation state (for `last rotation` in the status).
    func start() -> Report {
        var report = Report()
        report.lastRotation = rotator.lastRotationsFromState()
        finish(&report)
        return report
    }

    /// The logs' own schedule.
    func scheduled(force: Bool = false) -> Report {
        var report = Report()
        let (held, busy) = lock(&report.events)
        if !busy {
            rotator.runScheduled(force: force)
        }
        withExtendedLifetime(held) {}
        finish(&report)
        return report
    }

    func retryPending() -> Report {
        var report = Report()
        let (held, busy) = lock(&report.events)
        if !busy { rotator.retryPending() }
        withExtendedLifetime(held) {}
        finish(&report)
        return report
    }

    /// Creates the ballast when its filesystem has room for it.
    func maintainBallast(sample: UsageSample, policy: LevelPolicy) -> Report {
        var report = Report()
        if let ballast { report.events = ballast.ensure(sample: sample, policy: policy, now: UsageSampler.monotonicSeconds()) }
        return report
    }

    /// Once per level, then again every five minutes while it lasts.
    private func shouldReportInsufficient(device: UInt64, level: DiskLevel) -> Bool {
        let now = ContinuousClock.now
        if let last = insufficientReported[device], last.level == level, now - last.at < .seconds(300) { return false }
        insufficientReported[device] = (level, now)
        return true
    }

    /// Runs the ladder for `level` on the filesystem of `mount` until usage
    /// is below the level's threshold minus the hysteresis (at warn, both
    /// steps always run: they only rotate and compress).
    ///
    /// `forecastDriven`: the level comes from a short forecast, not from the
    /// usage (which is below it): every step of the ladder runs.
    func relieve(mount: UsageSample, level: DiskLevel, policy: LevelPolicy, growth: [String: Double] = [:], forecastDriven: Bool = false) -> Report {
        var report = Report()
        let started = ContinuousClock.now
        let device = mount.device
        let probe = mount.probe
        let goal = policy.threshold(level) - policy.hysteresis
        func percent() -> Double? {
            UsageSampler.read(path: probe, device: device, mountPoint: mount.mountPoint, paths: mount.paths)?.percent
        }
        func reached() -> Bool {
            guard level >= .critical, !forecastDriven, let p = percent() else { return false }
            return p < goal
        }
        let (held, busy) = lock(&report.events)
        defer { withExtendedLifetime(held) {} }
        let minBytes = config.pressureMinSize ?? max(64 * 1024, mount.totalBytes / 100)

        for step in Step.ladder(for: level, emergencyDeleteArchives: config.emergencyDeleteArchives) {
            if stop.isStopped || reached() { break }
            var stepEvents: [DiskEvent] = []
            var rotated = 0
            switch step {
            case .rotateNow:
                guard !busy else { continue }
                rotated = rotator.rotateForPressure(device: device, minBytes: minBytes)
            case .compress:
                guard !busy else { continue }
                rotator.compressForPressure(device: device)
            case .deleteBeyondPolicy:
                guard !busy else { continue }
                rotator.deleteBeyondPolicy(device: device)
            case .cleanupPaths:
                var excluded: Set<String> = [(stateDir as NSString).appendingPathComponent(RotationState.fileName)]
                if let b = ballast { excluded.insert(b.config.path) }
                var kept = config.kept
                kept.directories.append(stateDir)
                let found = CleanupScanner.candidates(
                    rules: config.cleanup, device: device, now: Date(), protected: protected, excluded: excluded, kept: kept)
                stepEvents += found.problems
                for candidate in found.candidates {
                    if stop.isStopped || reached() { break }
                    if let e = CleanupScanner.delete(candidate, protected: protected, reason: "cleanup rule (older than max-age)") { stepEvents.append(e) }
                }
            case .emergencyTruncate:
                stepEvents += LogWatch.emergencyTruncate(
                    rules: config.logs, protected: protected, device: device, mount: mount.mountPoint, rates: growth,
                    databaseDevices: LogWatch.databaseDevices(protected), reason: "emergency level reached",
                    needed: { percent().map { $0 >= policy.threshold(.emergency) } ?? true })
            case .releaseBallast:
                if let ballast, ballast.device == device,
                    let e = ballast.release(reason: "emergency level reached", mount: mount.mountPoint)
                {
                    stepEvents.append(e)
                }
            case .deleteArchives:
                guard !busy else { continue }
                for archive in rotator.emergencyArchives(device: device) {
                    if stop.isStopped || reached() { break }
                    _ = rotator.deleteArchive(archive.name, in: archive.dir, expected: archive.stat, reason: "emergency: oldest archive")
                }
            }
            stepEvents += rotator.takeEvents()
            _ = rotator.takeActions()
            let freed = stepEvents.reduce(Int64(0)) { $0 + $1.bytesFreed }
            let files = stepEvents.filter { $0.bytesFreed > 0 || $0.event == .logRotated }.count
            if freed > 0 || rotated > 0 || files > 0 {
                stepEvents.append(DiskEvent(.diskActionTaken, level: level >= .critical ? .warning : .notice, [
                    "action": step.rawValue, "mount": mount.mountPoint, "level": level.rawValue,
                    "total_bytes_freed": "\(freed)", "files": "\(max(files, rotated))",
                ]))
            }
            report.events += stepEvents
        }
        let after = percent()
        report.finalPercent = after
        let freed = report.bytesFreed
        let duration = ContinuousClock.now - started
        report.events.append(DiskEvent(.diskCleanupFinished, level: level >= .critical ? .warning : .info, [
            "mount": mount.mountPoint, "level": level.rawValue, "total_bytes_freed": "\(freed)",
            "percent_before": String(format: "%.2f", mount.percent), "percent_after": after.map { String(format: "%.2f", $0) } ?? "unknown",
            "duration_ms": "\(duration.milliseconds)",
        ]))
        if level >= .critical, !forecastDriven, let after, after >= policy.threshold(level), shouldReportInsufficient(device: device, level: level) {
            report.events.append(DiskEvent(.diskCleanupInsufficient, level: level == .emergency ? .critical : .error, [
                "mount": mount.mountPoint, "level": level.rawValue, "percent": String(format: "%.2f", after),
                "hint": "nothing more may be deleted under the configured paths; find what grows (du -x \(mount.mountPoint))",
            ]))
        }
        finish(&report)
        return report
    }
}
