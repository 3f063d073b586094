import Foundation
import Platform
import Synchronization

/// The application as guardian's child (`guardian run --exec "app serve"`, or
/// `exec:` in the configuration), Litestream's container idiom: the child
/// starts once every database is open and replicating; SIGTERM and SIGINT
/// are forwarded to it (its process group) instead of stopping guardian; when
/// it exits, guardian makes its final sync and exits with the child's status
/// (128 + N when signal N ended it). A reload (SIGHUP) leaves it running.
final class ExecChild: Sendable {
    let argv: [String]
    private let handle = ChildHandle()
    /// How the child ended: guardian's exit status (the child's, 128 + N for
    /// signal N) and a description.
    struct Outcome: Sendable {
        var status: Int32
        var summary: String
    }

    private let state = Mutex<(started: Bool, outcome: Outcome?, waiters: [UInt64: CheckedContinuation<Outcome?, Never>], next: UInt64)>((false, nil, [:], 0))

    init(argv: [String]) {
        self.argv = argv
    }

    /// Starts the child on its own thread (once; later calls do nothing).
    func start() {
        let first = state.withLock { s -> Bool in
            defer { s.started = true }
            return !s.started
        }
        guard first else { return }
        let argv = argv
        let handle = handle
        let thread = Thread { [self] in
            let outcome: Outcome
            do {
                // Its stdin, stdout, stderr and environment are guardian's
                // (secrets included: they are the application's own; systemd's
                // notify variables are not); no timeout.
                let o = try Subprocess.runBlocking(
                    argv, stdin: 0, stdout: 1, stderr: 2, timeout: .seconds(100 * 365 * 86400), handle: handle, keepSecrets: true)
                outcome = Outcome(status: o.exitCode ?? (128 + (o.signal ?? 0)), summary: o.summary)
            } catch {
                FileHandle.standardError.write(Data("guardian: exec \(argv.first ?? ""): \(error)\n".utf8))
                outcome = Outcome(status: 127, summary: "could not start: \(error)")
            }
            self.finish(outcome)
        }
        thread.name = "guardian-exec"
        thread.start()
    }

    private func finish(_ outcome: Outcome) {
        let waiters = state.withLock { s -> [CheckedContinuation<Outcome?, Never>] in
            s.outcome = outcome
            defer { s.waiters = [:] }
            return Array(s.waiters.values)
        }
        for w in waiters { w.resume(returning: outcome) }
    }

    /// Waits until the child has exited; nil when the waiting task is
    /// cancelled first (a reload ends the generation that waits).
    func exited() async -> Outcome? {
        let id = state.withLock { s -> UInt64 in
            defer { s.next += 1 }
            return s.next
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Outcome?, Never>) in
                let done = state.withLock { s -> Outcome?? in
                    if let o = s.outcome { return .some(o) }
                    if Task.isCancelled { return .some(nil) }
                    s.waiters[id] = c
                    return nil
                }
                if let done { c.resume(returning: done) }
            }
        } onCancel: {
            let waiter = state.withLock { $0.waiters.removeValue(forKey: id) }
            waiter?.resume(returning: nil)
        }
    }

    /// A stop signal came before the child started: it never will, and
    /// guardian stops with 128 + `signal`.
    func abandon(_ signal: Int32) {
        let first = state.withLock { s -> Bool in
            defer { s.started = true }
            return !s.started
        }
        if first { finish(Outcome(status: 128 + signal, summary: "not started: signal \(signal) came first")) }
    }

    var hasStarted: Bool { state.withLock { $0.started } }

    /// The child has exited, or was abandoned before it started.
    var isDone: Bool { state.withLock { $0.outcome != nil } }

    /// Forwards a signal to the child's process group.
    func forward(_ signal: Int32) { handle.signal(signal) }

    /// guardian's exit status: the child's, 128 + N for signal N.
    var exitStatus: Int32? { state.withLock { $0.outcome?.status } }
}

extension GuardianEvent {
    static let childExited = GuardianEvent(
        name: "childExited", id: "d77a99ef692b413db5d633af5c2b082d", message: "the application run by guardian exited")

    static let execEvents: [GuardianEvent] = [.childExited]
}

/// Splits a command line into words as a POSIX shell would, without running
/// one (Litestream's `exec:` is such a string): blanks separate words;
/// 'single quotes' keep everything; "double quotes" keep everything except
/// `\"`, `\\`, `\$` and `` \` ``; a backslash outside quotes keeps the next
/// character. No variables, globs or operators.
enum ShellWords {
    struct Unterminated: Error, CustomStringConvertible {
        var description: String { "an unterminated quote or trailing backslash" }
    }

    struct NoProgram: Error, CustomStringConvertible {
        var description: String { "must name a program, e.g. \"app serve\"" }
    }

    /// The argv of a command line (`exec:`, `--exec`): split like a shell
    /// would, without running one; it must name a program.
    static func command(_ line: String) throws -> [String] {
        try program(split(line))
    }

    /// `words` when they name a program, else `NoProgram`.
    static func program(_ words: [String]) throws -> [String] {
        guard let first = words.first, !first.isEmpty else { throw NoProgram() }
        return words
    }

    static func split(_ line: String) throws -> [String] {
        var words: [String] = []
        var word = ""
        var inWord = false
        var it = line.makeIterator()
        while let c = it.next() {
            switch c {
            case " ", "\t", "\n":
                if inWord { words.append(word); word = ""; inWord = false }
            case "'":
                inWord = true
                while true {
                    guard let q = it.next() else { throw Unterminated() }
                    if q == "'" { break }
                    word.append(q)
                }
            case "\"":
                inWord = true
                while true {
                    guard let q = it.next() else { throw Unterminated() }
                    if q == "\"" { break }
                    if q == "\\" {
                        guard let n = it.next() else { throw Unterminated() }
                        if !"\"\\$`".contains(n) { word.append("\\") }
                        word.append(n)
                    } else {
                        word.append(q)
                    }
                }
            case "\\":
                guard let n = it.next() else { throw Unterminated() }
                inWord = true
                word.append(n)
            default:
                inWord = true
                word.append(c)
            }
        }
        if inWord { words.append(word) }
        return words
    }
}
