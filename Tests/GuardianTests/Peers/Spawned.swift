import Foundation
import Platform

/// A server process started with posix_spawn and reaped by its own PID.
///
/// Not Foundation's `Process`: on Linux it learns of a child's exit from a
/// socket the child inherits and then calls a *blocking* waitpid on its one
/// monitor thread. sshd closes every inherited descriptor at start, so that
/// thread would block on a live sshd forever, and every `Process` in the test
/// process would stop noticing exits. Here stdin is /dev/null, stdout and
/// stderr go to files, every other descriptor is closed in the child, and
/// exit is polled with WNOHANG.
final class Spawned: @unchecked Sendable {
    let pid: pid_t
    let stdoutPath: String
    let stderrPath: String
    private let lock = NSLock()
    private var exitStatus: Int32?

    /// posix_spawn runs on this one long-lived thread: the parent-death
    /// signal (below) fires when the *thread* that spawned the child ends.
    /// One thread only: BlockingPool ends its extra threads after a while idle.
    private static let spawner = BlockingPool(name: "guardian-test-spawner", threads: 1, maxThreads: 1)

    /// Starts `executable`. Under `setpriv --pdeathsig KILL` (util-linux) the
    /// server dies with the test process even if that crashes, so no server
    /// outlives its test run.
    static func start(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) async throws -> Spawned {
        try await spawner.run {
            let setpriv = "/usr/bin/setpriv"
            if FileManager.default.isExecutableFile(atPath: setpriv) {
                return try Spawned(setpriv, ["--pdeathsig", "KILL", "--", executable] + arguments, environment: environment)
            }
            return try Spawned(executable, arguments, environment: environment)
        }
    }

    private init(_ executable: String, _ arguments: [String], environment: [String: String] = [:]) throws {
        let base = NSTemporaryDirectory() + "guardian-spawn-\(UUID().uuidString.prefix(8))"
        stdoutPath = base + ".out"
        stderrPath = base + ".err"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        // glibc ≥ 2.34; not exported to Swift by the Glibc module, so looked up.
        if let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") {
            typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
            _ = unsafeBitCast(symbol, to: CloseFrom.self)(&actions, 3)
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var none = sigset_t()
        sigemptyset(&none)
        var all = sigset_t()
        sigfillset(&all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var env = ProcessInfo.processInfo.environment
        for key in ["NOTIFY_SOCKET", "JOURNAL_STREAM", "WATCHDOG_USEC", "WATCHDOG_PID"] { env.removeValue(forKey: key) }
        env.merge(environment) { $1 }
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        var child: pid_t = 0
        let rc = posix_spawn(&child, executable, &actions, &attributes, argv, envp)
        guard rc == 0 else { throw TestFailure("posix_spawn \(executable): \(String(cString: strerror(rc)))") }
        pid = child
    }

    /// Reaps the child if it has exited (never blocks).
    var isRunning: Bool {
        lock.withLock {
            if exitStatus == nil {
                var status: Int32 = 0
                let r = waitpid(pid, &status, WNOHANG)
                if r == pid { exitStatus = status } else if r < 0, errno == ECHILD { exitStatus = -1 }
            }
            return exitStatus == nil
        }
    }

    func signal(_ sig: Int32) {
        if isRunning { kill(pid, sig) }
    }

    /// Polls until the child has exited; false on timeout.
    @discardableResult
    func wait(timeout: Duration = .seconds(10)) async -> Bool {
        await TestSupport.waitUntil(timeout: timeout) { !isRunning }
    }

    /// SIGKILL and reap, without suspending (for deinit and synchronous cleanup).
    func killNow() {
        guard isRunning else { return }
        kill(pid, SIGCONT)
        kill(pid, SIGKILL)
        let deadline = Date().addingTimeInterval(10)
        while isRunning, Date() < deadline { usleep(5000) }
    }

    var stdout: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    func removeFiles() {
        try? FileManager.default.removeItem(atPath: stdoutPath)
        try? FileManager.default.removeItem(atPath: stderrPath)
    }

    deinit { killNow() }
}

/// The process a loopback peer (moto, sshd) is running now, if any: replaced on
/// restart, taken and killed on stop. One place for the lock and the teardown.
final class PeerSlot: @unchecked Sendable {
    private let lock = NSLock()
    private var child: Spawned?

    var current: Spawned? { lock.withLock { child } }
    var pid: Int32 { current?.pid ?? -1 }
    var log: String { current?.stderr ?? "" }

    func set(_ process: Spawned) { lock.withLock { child = process } }

    /// Kills the process now (synchronously, for deinit), removes its output
    /// files and the peer's directory.
    func stop(removing dir: String) {
        let process = lock.withLock { () -> Spawned? in
            defer { child = nil }
            return child
        }
        if let process {
            process.killNow()
            process.removeFiles()
        }
        TestSupport.cleanup(dir)
    }
}
