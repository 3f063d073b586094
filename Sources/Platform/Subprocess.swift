import CLinux
import Foundation
import Synchronization

/// The outcome of one child process.
public struct ProcessOutcome: Sendable, Equatable {
    /// Exit status when the child exited normally.
    public var exitCode: Int32?
    /// The signal that ended the child, if one did.
    public var signal: Int32?
    /// The child outlived its timeout and was killed.
    public var timedOut: Bool
    /// The first `outputLimit` bytes of stdout (when captured) and stderr.
    public var stdout: [UInt8]
    public var stderr: [UInt8]

    public var succeeded: Bool { exitCode == 0 && !timedOut }

    /// `exit 1: first line of stderr`, `killed by signal 9 after the 30s timeout`.
    public var summary: String {
        var text: String
        if timedOut {
            text = "timed out and was killed"
        } else if let exitCode {
            text = "exit \(exitCode)"
        } else if let signal {
            text = "killed by signal \(signal)"
        } else {
            text = "ended"
        }
        let firstLine = String(decoding: stderr.prefix(400), as: UTF8.self)
            .split(separator: "\n", omittingEmptySubsequences: true).first.map(String.init)
        if let firstLine, !firstLine.isEmpty { text += ": \(firstLine)" }
        return text
    }
}

/// The environment guardian's children (postrotate, stop/start/status
/// commands, gzip) get: guardian's own without its secrets. Hidden are the
/// variables the configuration references as `${VAR}` (registered as it is
/// read: webhook tokens, S3 and SFTP credentials come from there), cloud
/// credentials (`AWS_*`), names that say they hold one (`*SECRET*`,
/// `*TOKEN*`, `*PASSWORD*`, `*PASSWD*`, `*CREDENTIAL*`, `*API_KEY*`,
/// `*PRIVATE_KEY*`), and systemd's notify and watchdog variables, which are
/// guardian's alone.
public enum ChildEnvironment {
    private static let hidden = Mutex<Set<String>>([])

    /// Never passes these variables to a child.
    public static func hide(_ names: some Sequence<String>) {
        hidden.withLock { $0.formUnion(names) }
    }

    public static func isHidden(_ name: String) -> Bool {
        if hidden.withLock({ $0.contains(name) }) { return true }
        let upper = name.uppercased()
        if upper.hasPrefix("AWS_") || isSystemdOwn(name) { return true }
        return ["SECRET", "TOKEN", "PASSWORD", "PASSWD", "CREDENTIAL", "API_KEY", "PRIVATE_KEY"].contains { upper.contains($0) }
    }

    /// systemd's notify and watchdog variables: guardian's alone, never a child's.
    static func isSystemdOwn(_ name: String) -> Bool {
        let upper = name.uppercased()
        return upper == "NOTIFY_SOCKET" || upper.hasPrefix("WATCHDOG_")
    }

    /// `NAME=value` entries of this process's environment minus the hidden
    /// ones; with `keepSecrets` (the application guardian runs with `--exec`:
    /// its environment is its own) only systemd's variables are left out.
    public static func entries(keepSecrets: Bool = false) -> [String] {
        var out: [String] = []
        var p = environ
        while let entry = p.pointee {
            let text = String(cString: entry)
            let name = text.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? text
            if keepSecrets ? !isSystemdOwn(name) : !isHidden(name) { out.append(text) }
            p += 1
        }
        return out
    }
}

/// Runs a program without a shell: `posix_spawnp` with an argv, stdin from
/// /dev/null (or a given descriptor), stdout to a pipe (or a given
/// descriptor), stderr to a pipe (or a given descriptor). Pipes are drained while the child
/// runs, so a chatty child cannot deadlock on a full pipe; output beyond
/// `outputLimit` is read and dropped. The child gets default signal
/// dispositions and an empty signal mask (guardian ignores and blocks some
/// signals for its own handlers), its own process group, no descriptor of
/// guardian's other than 0, 1 and 2, and guardian's environment without its
/// secrets (`ChildEnvironment`). On timeout the whole group gets SIGTERM,
/// then SIGKILL two seconds later.
///
/// `runBlocking` blocks its thread: call it from a `ThreadExecutor` actor or
/// through a `BlockingPool`; `run` does the latter and kills the child when the
/// calling task is cancelled.
public enum Subprocess {
    public static let killGrace: Duration = .seconds(2)

    /// Runs `argv` and waits for it (blocking). `environment`: `NAME=value`
    /// entries added to the child's.
    public static func runBlocking(
        _ argv: [String], stdin: Int32? = nil, stdout: Int32? = nil, stderr: Int32? = nil,
        timeout: Duration, outputLimit: Int = 64 * 1024, handle: ChildHandle? = nil, keepSecrets: Bool = false,
        environment extra: [String] = []
    ) throws -> ProcessOutcome {
        guard let program = argv.first, !program.isEmpty else {
            throw SystemError("spawn (empty command)", path: "", code: EINVAL)
        }
        var outPipe: [Int32] = [-1, -1]
        var errPipe: [Int32] = [-1, -1]
        func closePipes() {
            for fd in outPipe + errPipe where fd >= 0 { close(fd) }
        }
        if stdout == nil {
            guard pipe2(&outPipe, O_CLOEXEC) == 0 else { throw SystemError("pipe", path: program) }
        }
        if stderr == nil, pipe2(&errPipe, O_CLOEXEC) != 0 {
            let e = SystemError("pipe", path: program)
            closePipes()
            throw e
        }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if let stdin {
            posix_spawn_file_actions_adddup2(&actions, stdin, 0)
        } else {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        }
        posix_spawn_file_actions_adddup2(&actions, stdout ?? outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, stderr ?? errPipe[1], 2)
        _ = posix_spawn_file_actions_addclosefrom_np(&actions, 3)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in 1..<32 where signal != SIGKILL && signal != SIGSTOP { sigaddset(&defaults, Int32(signal)) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attributes, &mask)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP))

        var pid: pid_t = 0
        let cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for p in cArgs { free(p) } }
        let cEnv: [UnsafeMutablePointer<CChar>?] = (ChildEnvironment.entries(keepSecrets: keepSecrets) + extra).map { strdup($0) } + [nil]
        defer { for p in cEnv { free(p) } }
        let rc = posix_spawnp(&pid, program, &actions, &attributes, cArgs, cEnv)
        // The write ends belong to the child now.
        if outPipe[1] >= 0 { close(outPipe[1]); outPipe[1] = -1 }
        if errPipe[1] >= 0 { close(errPipe[1]); errPipe[1] = -1 }
        guard rc == 0 else {
            closePipes()
            throw SystemError("spawn", path: program, code: rc)
        }
        handle?.started(pid)
        defer { handle?.finished() }

        let deadline = ContinuousClock.now + timeout
        var out: [UInt8] = []
        var err: [UInt8] = []
        var open: [(fd: Int32, isErr: Bool)] = []
        if outPipe[0] >= 0 { open.append((outPipe[0], false)) }
        if errPipe[0] >= 0 { open.append((errPipe[0], true)) }
        var status: Int32 = 0
        var reaped = false
        var timedOut = false
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)

        // Drain the pipes until both close or the child is gone.
        while !open.isEmpty {
            if ContinuousClock.now >= deadline {
                timedOut = true
                break
            }
            var fds = open.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
            let remaining = max(0, (deadline - ContinuousClock.now).milliseconds)
            let n = poll(&fds, nfds_t(fds.count), Int32(min(remaining, 100)))
            if n < 0, errno != EINTR { break }
            var closed: Set<Int32> = []
            for p in fds where p.revents != 0 {
                let count = buffer.withUnsafeMutableBytes { read(p.fd, $0.baseAddress, $0.count) }
                if count > 0 {
                    let isErr = open.first { $0.fd == p.fd }?.isErr ?? true
                    if isErr {
                        if err.count < outputLimit { err.append(contentsOf: buffer[0..<min(count, outputLimit - err.count)]) }
                    } else if out.count < outputLimit {
                        out.append(contentsOf: buffer[0..<min(count, outputLimit - out.count)])
                    }
                } else if count == 0 || (errno != EINTR && errno != EAGAIN) {
                    closed.insert(p.fd)
                }
            }
            for fd in closed { close(fd) }
            open.removeAll { closed.contains($0.fd) }
            // A grandchild may keep the pipes open after the child exits.
            if !reaped, n == 0, waitpid(pid, &status, WNOHANG) == pid {
                reaped = true
                break
            }
        }
        for entry in open { close(entry.fd) }

        if !reaped {
            while !timedOut {
                let r = waitpid(pid, &status, WNOHANG)
                if r == pid { reaped = true; break }
                if r < 0, errno != EINTR { reaped = true; status = 0; break }
                if ContinuousClock.now >= deadline { timedOut = true; break }
                usleep(5_000)
            }
        }
        if timedOut, !reaped {
            kill(-pid, SIGTERM)
            let graceEnd = ContinuousClock.now + killGrace
            while ContinuousClock.now < graceEnd {
                if waitpid(pid, &status, WNOHANG) == pid { reaped = true; break }
                usleep(10_000)
            }
            if !reaped {
                kill(-pid, SIGKILL)
                while waitpid(pid, &status, 0) < 0, errno == EINTR {}
            }
        }
        let exited = (status & 0x7f) == 0
        return ProcessOutcome(
            exitCode: exited ? (status >> 8) & 0xff : nil,
            signal: exited ? nil : status & 0x7f,
            timedOut: timedOut, stdout: out, stderr: err)
    }

    /// Runs `argv` on the shared blocking pool; cancelling the calling task
    /// kills the child's process group.
    public static func run(
        _ argv: [String], timeout: Duration, outputLimit: Int = 64 * 1024, pool: BlockingPool = .shared
    ) async throws -> ProcessOutcome {
        let handle = ChildHandle()
        return try await withTaskCancellationHandler {
            try await pool.run {
                try runBlocking(argv, timeout: timeout, outputLimit: outputLimit, handle: handle)
            }
        } onCancel: {
            handle.kill()
        }
    }
}

/// The pid of a running child, so that another thread can kill it.
public final class ChildHandle: Sendable {
    public init() {}

    /// `pending`: signals sent before the child existed, delivered once it does.
    private let state = Mutex<(pid: pid_t?, killed: Bool, pending: [Int32], ended: Bool)>((nil, false, [], false))

    func started(_ pid: pid_t) {
        let (kill, pending) = state.withLock { s -> (Bool, [Int32]) in
            s.pid = pid
            defer { s.pending = [] }
            return (s.killed, s.pending)
        }
        for signal in pending { Glibc.kill(-pid, signal) }
        if kill { Glibc.kill(-pid, SIGKILL) }
    }

    func finished() {
        state.withLock {
            $0.pid = nil
            $0.ended = true
        }
    }

    /// Sends `signal` to the child's process group; one sent before the child
    /// is running is delivered as soon as it runs (nothing once it has ended).
    public func signal(_ signal: Int32) {
        let pid = state.withLock { s -> pid_t? in
            if s.pid == nil, !s.ended { s.pending.append(signal) }
            return s.pid
        }
        if let pid { Glibc.kill(-pid, signal) }
    }

    public func kill() {
        let pid = state.withLock { s -> pid_t? in
            s.killed = true
            return s.pid
        }
        if let pid { Glibc.kill(-pid, SIGKILL) }
    }
}
