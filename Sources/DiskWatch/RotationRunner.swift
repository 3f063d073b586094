import Foundation
import Platform

/// One rotation pass outside the daemon: what `guardian rotate` runs.
public enum RotationRunner {
    public struct Result: Sendable {
        /// What was done (or would be, in a dry run), in order.
        public var actions: [RotationAction]
        /// The events of the pass (not logged here; the caller decides).
        public var events: [DiskEvent]
        /// Problems found in the configuration before anything was touched.
        public var problems: [DiskConfigProblem]

        /// Something went wrong: a failed rotation, a refused path, a failed
        /// script (pre/postrotate, first/lastaction), or a log missing without `missingok` (logrotate exits
        /// 1 for it too; the other logs are rotated all the same).
        public var failed: Bool {
            actions.contains { $0.kind == .fail || $0.kind == .refuse }
                || events.contains { $0.level >= .error || $0.event == .logGlobNoMatch }
        }
    }

    /// Rotates the configured logs once by their criteria (all of them with
    /// `force`), with the same state and lock as the daemon. Blocks: call it
    /// through `BlockingPool`. Waits up to `lockWait` for a daemon that is
    /// rotating at the same moment.
    public static func runOnce(
        config: DiskConfig, protectedPaths: [String], stateDir: String, dryRun: Bool, force: Bool,
        lockWait: Duration = .seconds(10)
    ) throws -> Result {
        let problems = config.problems(protectedPaths: protectedPaths)
        var options = LogRotator.Options()
        options.dryRun = dryRun
        options.statePath = (stateDir as NSString).appendingPathComponent(RotationState.fileName)
        let rotator = LogRotator(rules: config.logs, protected: ProtectedFiles(protectedPaths), options: options)
        let lock = dryRun ? nil : try RotationLock(stateDir: stateDir, wait: lockWait)
        rotator.runScheduled(force: force)
        withExtendedLifetime(lock) {}
        return Result(actions: rotator.takeActions(), events: rotator.takeEvents(), problems: problems)
    }
}
