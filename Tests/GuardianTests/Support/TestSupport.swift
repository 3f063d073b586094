import Foundation
import Testing

/// Helpers shared by guardian's tests: temp dirs, the built binary, child
/// processes with captured output, polling.
enum TestSupport {
    /// The package root (Tests/GuardianTests/Support/ is three levels down).
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<4 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// ../shared beside the checkout (CI clones with shared/ beside it).
    static var sharedDir: String { (packageRoot as NSString).deletingLastPathComponent + "/shared" }

    /// The `guardian` executable built next to the test bundle.
    static let guardianBinary: String = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        let dir = (exe as NSString).deletingLastPathComponent
        let candidate = dir + "/guardian"
        if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        return packageRoot + "/.build/debug/guardian"
    }()

    static let venvBin = packageRoot + "/.tools/venv/bin"

    /// A fresh directory under /tmp, removed by the caller with `cleanup`.
    static func makeTempDir(_ label: String = "t") throws -> String {
        let path = NSTemporaryDirectory() + "guardian-\(label)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func cleanup(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }

    static func write(_ text: String, to path: String) throws {
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// Polls `condition` every 20 ms until it holds or `timeout` passes.
    static func waitUntil(timeout: Duration = .seconds(10), _ condition: () async throws -> Bool) async rethrows -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if try await condition() { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return try await condition()
    }

    /// A free TCP port on 127.0.0.1.
    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: addr.sin_port))
    }
}

/// A child process whose stdout and stderr go to files (no pipe deadlocks).
final class ChildProcess: @unchecked Sendable {
    let process = Process()
    let stdoutPath: String
    let stderrPath: String

    init(_ executable: String, _ arguments: [String], environment: [String: String]? = nil, directory: String? = nil) throws {
        let base = NSTemporaryDirectory() + "guardian-child-\(UUID().uuidString.prefix(8))"
        stdoutPath = base + ".out"
        stderrPath = base + ".err"
        _ = FileManager.default.createFile(atPath: stdoutPath, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "NOTIFY_SOCKET")
        env.removeValue(forKey: "JOURNAL_STREAM")
        env.removeValue(forKey: "WATCHDOG_USEC")
        if let environment { env.merge(environment) { $1 } }
        process.environment = env
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle(forWritingAtPath: stdoutPath)
        process.standardError = FileHandle(forWritingAtPath: stderrPath)
    }

    static func start(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> ChildProcess {
        let child = try ChildProcess(executable, arguments, environment: environment)
        try child.process.run()
        return child
    }

    var pid: Int32 { process.processIdentifier }
    var stdout: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    func signal(_ sig: Int32) { kill(process.processIdentifier, sig) }

    /// Waits for exit (polling, so no thread blocks) and returns the status.
    @discardableResult
    func wait(timeout: Duration = .seconds(30)) async -> Int32? {
        let done = await TestSupport.waitUntil(timeout: timeout) { !process.isRunning }
        if !done {
            signal(SIGKILL)
            _ = await TestSupport.waitUntil(timeout: .seconds(5)) { !process.isRunning }
            return nil
        }
        return process.terminationStatus
    }

    func removeFiles() {
        try? FileManager.default.removeItem(atPath: stdoutPath)
        try? FileManager.default.removeItem(atPath: stderrPath)
    }

    deinit {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }
}

struct RunResult: Sendable {
    let status: Int32
    let stdout: String
    let stderr: String
}

/// Runs a command to completion and captures its output.
func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil, timeout: Duration = .seconds(60)) async throws -> RunResult {
    let child = try ChildProcess.start(executable, arguments, environment: environment)
    defer { child.removeFiles() }
    let status = await child.wait(timeout: timeout) ?? -9
    return RunResult(status: status, stdout: child.stdout, stderr: child.stderr)
}

/// Runs the built guardian binary.
func guardian(_ arguments: [String], environment: [String: String]? = nil, timeout: Duration = .seconds(60)) async throws -> RunResult {
    try await run(TestSupport.guardianBinary, arguments, environment: environment, timeout: timeout)
}

/// Starts `guardian run --config CONFIG` (logs on stderr; `launcher` runs it,
/// e.g. through setpriv) and waits until `guardian status --json` contains
/// `marker`; throws with guardian's stderr if it never does. The caller
/// stops it (`defer { child.removeFiles(); child.signal(SIGKILL) }`).
func startDaemon(
    config: String, until marker: String = "\"state\" : \"ready\"", timeout: Duration = .seconds(20), launcher: [String] = []
) async throws -> ChildProcess {
    let argv = launcher + [TestSupport.guardianBinary, "run", "--config", config, "--log-target", "stderr"]
    let child = try ChildProcess.start(argv[0], Array(argv.dropFirst()))
    let up = try await TestSupport.waitUntil(timeout: timeout) {
        let r = try await guardian(["status", "--config", config, "--json"])
        return r.status == 0 && r.stdout.contains(marker)
    }
    guard up else {
        child.signal(SIGKILL)
        _ = await child.wait(timeout: .seconds(5))
        defer { child.removeFiles() }
        throw TestFailure("guardian never reported \(marker): \(child.stderr)")
    }
    return child
}

/// Runs the sqlite3 CLI against a database.
@discardableResult
func sqlite3(_ db: String, _ sql: String) async throws -> String {
    let r = try await run("/usr/bin/sqlite3", [db, sql])
    if r.status != 0 { throw TestFailure("sqlite3 \(sql): \(r.stderr)") }
    return r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
