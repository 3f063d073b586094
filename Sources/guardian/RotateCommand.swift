import ArgumentParser
import DiskWatch
import Foundation
import Platform

/// `guardian rotate [--config PATH] [--dry-run] [--force]`: one rotation
/// pass of the logs in `disk.logs`, with the daemon's semantics, state file
/// and lock; prints each action.
struct RotateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate",
        abstract: "Rotate the configured logs once (as their criteria say) and print what was done.",
        discussion: """
            Uses the same rules, state (<state-dir>/disk-rotation.json) and lock as `guardian run`, \
            so it never rotates at the same moment as the daemon. Exit status: 0 done, 1 something \
            failed or was refused, 2 configuration error.
            """
    )

    @OptionGroup var options: ConfigOptions

    @Flag(help: "Print what would be done; change nothing.")
    var dryRun = false

    @Flag(help: "Rotate every log regardless of its criteria (like logrotate -f).")
    var force = false

    func run() async throws {
        let config = try options.load()
        let disk = config.disk
        let protected = config.dbs.map(\.path)
        let stateDir = config.stateDir
        let dryRun = dryRun
        let force = force
        if disk.logs.isEmpty {
            print("no logs are configured (disk.logs in \(options.config))")
            return
        }
        let result: RotationRunner.Result
        do {
            result = try await BlockingPool.shared.run {
                try RotationRunner.runOnce(config: disk, protectedPaths: protected, stateDir: stateDir, dryRun: dryRun, force: force)
            }
        } catch {
            CLI.fail("\(error)", code: 1)
        }
        for problem in result.problems {
            FileHandle.standardError.write(Data("guardian: \(options.config): \(problem)\n".utf8))
        }
        for action in result.actions { print(action) }
        for event in result.events where event.level >= .warning {
            FileHandle.standardError.write(Data("guardian: \(event.level): \(event)\n".utf8))
        }
        if result.actions.isEmpty {
            print(dryRun ? "nothing would be rotated" : "nothing to rotate")
        }
        if result.failed { throw ExitCode(1) }
    }
}

/// `guardian disk-bench` (hidden): the disk guardian's benchmark; see
/// `DiskBenchmark` and benchmarks/disk/README.md. Needs root (it mounts tmpfs).
struct DiskBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "disk-bench",
        abstract: "Benchmark the disk guardian: CPU and memory of the watcher, time to the first freed byte.",
        shouldDisplay: false
    )

    @Option(help: "tmpfs filesystems to watch.")
    var mounts = 10

    @Option(help: "Log files spread over them.")
    var logs = 100

    @Option(help: "How long to measure the watcher, in seconds.")
    var seconds = 60

    @Option(help: "Reaction trials per level.")
    var trials = 3

    func run() async throws {
        var options = DiskBenchmark.Options()
        options.mounts = mounts
        options.logs = logs
        options.seconds = seconds
        options.trials = trials
        let figures = try await DiskBenchmark.run(options) { line in
            FileHandle.standardError.write(Data("\(line)\n".utf8))
        }
        print(figures)
    }
}
