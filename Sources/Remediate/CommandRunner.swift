import Foundation
import Platform

/// The outcome of one command.
public struct CommandOutcome: Sendable, Equatable {
    public var exitCode: Int32?
    public var signal: Int32?
    public var timedOut: Bool
    /// The first 4 KiB of stdout and stderr together.
    public var output: String

    public var succeeded: Bool { exitCode == 0 && !timedOut }

    public var summary: String {
        var text = timedOut ? "timed out and was killed" : exitCode.map { "exit \($0)" } ?? signal.map { "killed by signal \($0)" } ?? "ended"
        if let line = output.split(separator: "\n", omittingEmptySubsequences: true).last.map(String.init), !line.isEmpty {
            text += ": \(line.prefix(300))"
        }
        return text
    }
}

/// Runs a configured command (an argv, never through a shell) with a
/// timeout, on Remediate's own thread pool — never on the cooperative pool. stdin is
/// /dev/null; stdout and stderr go to a private temp file rather than a
/// pipe, so a command that leaves a background child (a start script that
/// launches the app) returns as soon as the command itself exits. The child
/// runs in its own process group with default signal handling; on timeout
/// the group gets SIGTERM, then SIGKILL after two seconds.
public enum CommandRunner {
    public static func run(_ argv: [String], timeout: Duration) async throws -> CommandOutcome {
        try await RemediatePool.shared.run { try runBlocking(argv, timeout: timeout) }
    }

    public static func runBlocking(_ argv: [String], timeout: Duration) throws -> CommandOutcome {
        guard let program = argv.first, !program.isEmpty else {
            throw SystemError("run (empty command)", path: "", code: EINVAL)
        }
        var template = Array((NSTemporaryDirectory() + "guardian-cmd-XXXXXX").utf8CString)
        let outFD = template.withUnsafeMutableBufferPointer { buf -> Int32 in
            guard let base = buf.baseAddress else { return -1 }
            return mkstemp(base)
        }
        guard outFD >= 0 else { throw SystemError("mkstemp", path: NSTemporaryDirectory()) }
        _ = fcntl(outFD, F_SETFD, FD_CLOEXEC)
        let outPath = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        unlink(outPath)  // the descriptor keeps it alive; nothing is left behind
        defer { close(outFD) }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, outFD, 1)
        posix_spawn_file_actions_adddup2(&actions, outFD, 2)

        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        var all = sigset_t()
        sigfillset(&all)
        sigdelset(&all, SIGKILL)
        sigdelset(&all, SIGSTOP)
        posix_spawnattr_setsigmask(&attr, &empty)
        posix_spawnattr_setsigdefault(&attr, &all)
        posix_spawnattr_setpgroup(&attr, 0)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP))

        var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for p in cArgs { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, program, &actions, &attr, &cArgs, environ)
        guard rc == 0 else { throw SystemError("run", path: program, code: rc) }

        let deadline = ContinuousClock.now + timeout
        var status: Int32 = 0
        var timedOut = false
        var termSentAt: ContinuousClock.Instant?
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { break }
            if r < 0, errno != EINTR { break }
            let now = ContinuousClock.now
            if now >= deadline {
                if termSentAt == nil {
                    timedOut = true
                    kill(-pid, SIGTERM)
                    kill(pid, SIGTERM)
                    termSentAt = now
                } else if let sent = termSentAt, now - sent >= .seconds(2) {
                    kill(-pid, SIGKILL)
                    kill(pid, SIGKILL)
                    _ = waitpid(pid, &status, 0)
                    break
                }
            }
            usleep(5_000)
        }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { pread(outFD, $0.baseAddress, 4096, 0) }
        let output = n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self) : ""
        // WIFEXITED / WEXITSTATUS / WTERMSIG are macros Swift cannot import.
        let exited = status & 0x7f == 0
        return CommandOutcome(
            exitCode: exited ? (status >> 8) & 0xff : nil, signal: exited ? nil : status & 0x7f, timedOut: timedOut,
            output: output.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
