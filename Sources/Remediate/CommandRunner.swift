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

/// Runs a configured command (an argv, never through a shell: Platform's
/// `Subprocess`) with a timeout, on Remediate's own thread pool — never on the
/// cooperative pool. stdin is /dev/null; stdout and stderr go to a private,
/// already unlinked temp file rather than a pipe, so a start script that
/// launches the app in the background returns as soon as the script exits,
/// and the app can keep writing to its inherited output. The child runs in
/// its own process group with default signal handling; on timeout the group
/// gets SIGTERM, then SIGKILL after two seconds.
public enum CommandRunner {
    public static func run(_ argv: [String], timeout: Duration) async throws -> CommandOutcome {
        try await RemediatePool.shared.run { try runBlocking(argv, timeout: timeout) }
    }

    public static func runBlocking(_ argv: [String], timeout: Duration) throws -> CommandOutcome {
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
        let p = try Subprocess.runBlocking(argv, stdout: outFD, stderr: outFD, timeout: timeout)
        var buffer = [UInt8](repeating: 0, count: 4096)
        let n = buffer.withUnsafeMutableBytes { pread(outFD, $0.baseAddress, 4096, 0) }
        let output = n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self) : ""
        return CommandOutcome(
            exitCode: p.exitCode, signal: p.signal, timedOut: p.timedOut,
            output: output.trimmingCharacters(in: .whitespacesAndNewlines))
    }
}
