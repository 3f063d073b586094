import Foundation
import Platform
import Synchronization
import UnixSignals

/// `guardian status --watch [SECONDS]`: asks the daemon for its status every
/// interval until SIGINT (Ctrl-C) or SIGTERM, then exits 0.
///
/// - On a terminal the table is redrawn in place: cursor home, each line
///   cleared to its end, the rest of the screen cleared; the cursor is hidden
///   meanwhile and shown again on exit. Lines are cut to the terminal's width
///   and the table to its height, so the screen never scrolls.
/// - Otherwise (a pipe, a file) each snapshot is printed in full, with a
///   blank line between snapshots.
/// - With `--json`, one compact status document per line (JSON Lines).
///
/// A daemon that does not answer is reported (in place, or on stderr) and
/// asked again at the next interval: watching a restart is the point.
struct StatusWatch {
    let socket: String
    let interval: Double
    let json: Bool
    let color: Bool
    /// `--db PATTERN`.
    var dbPattern: String? = nil
    var isTTY = CLI.stdoutIsTTY

    func run() async {
        let screen = Screen(inPlace: isTTY && !json)
        screen.start()
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                for await _ in await UnixSignalsSequence(trapping: .sigint, .sigterm) {
                    // Do not wait for a request in flight: restore the terminal and leave.
                    screen.finish()
                    exit(0)
                }
            }
            group.addTask { await loop(screen) }
            await group.next()
            group.cancelAll()
        }
        screen.finish()
    }

    private func loop(_ screen: Screen) async {
        while !Task.isCancelled {
            let reply = try? await StatusCommand.fetch(socket)
            if json {
                if let line = reply.flatMap({ Self.compactJSON(Self.filtered($0, dbPattern)) }) {
                    screen.line(line)
                } else {
                    screen.error(StatusCommand.notRunning(socket) + "; asking again in \(Self.seconds(interval))")
                }
            } else {
                screen.frame(render(reply))
            }
            try? await Task.sleep(for: .milliseconds(Int64(interval * 1000)))
        }
    }

    private func render(_ reply: [UInt8]?) -> String {
        guard let reply else {
            return "guardian status --watch: " + StatusCommand.notRunning(socket) + "\nasking again every \(Self.seconds(interval)) (Ctrl-C to quit)\n"
        }
        guard var doc = try? StatusDocument.decoder().decode(StatusDocument.self, from: Data(reply)) else {
            return "guardian status --watch: the daemon at \(socket) sent a reply that is not a status document\n"
        }
        if let dbPattern { doc = StatusOverview.filter(doc, pattern: dbPattern) }
        return StatusTable.render(doc, StatusTable.Options(color: color, showClock: true))
    }

    /// The reply with `--db PATTERN` applied (as is without one, or when it is not a status document).
    static func filtered(_ reply: [UInt8], _ pattern: String?) -> [UInt8] {
        guard let pattern, let doc = try? StatusDocument.decoder().decode(StatusDocument.self, from: Data(reply)),
              let data = try? StatusDocument.encoder().encode(StatusOverview.filter(doc, pattern: pattern))
        else { return reply }
        return Array(data)
    }

    static func seconds(_ s: Double) -> String {
        s == s.rounded() ? "\(Int(s))s" : "\(s)s"
    }

    /// The daemon's pretty-printed document on one line.
    static func compactJSON(_ reply: [UInt8]) -> String? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(reply)),
              let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
        else { return nil }
        return String(decoding: data, as: UTF8.self)
    }

    /// Writes frames to stdout (unbuffered, one write per frame) and owns the
    /// terminal state, so that the exit path restores it exactly once and no
    /// frame is drawn after that.
    final class Screen: Sendable {
        let inPlace: Bool
        private let state = Mutex<(finished: Bool, frames: Int)>((false, 0))

        init(inPlace: Bool) { self.inPlace = inPlace }

        /// Hides the cursor and clears the screen once (in place only).
        func start() {
            if inPlace { write("\u{1B}[?25l\u{1B}[H\u{1B}[2J") }
        }

        /// Shows the cursor again and leaves it below the table.
        func finish() {
            let first = state.withLock { s in
                defer { s.finished = true }
                return !s.finished
            }
            if first && inPlace { write("\u{1B}[0m\u{1B}[?25h\n") }
        }

        func frame(_ text: String) {
            state.withLock { s in
                guard !s.finished else { return }
                if inPlace {
                    let size = Self.terminalSize()
                    write(Self.inPlace(text, rows: size.rows, columns: size.columns))
                } else {
                    write((s.frames > 0 ? "\n" : "") + text)
                }
                s.frames += 1
            }
        }

        func line(_ text: String) {
            state.withLock { s in
                guard !s.finished else { return }
                write(text + "\n")
            }
        }

        func error(_ text: String) {
            FileHandle.standardError.write(Data("guardian: \(text)\n".utf8))
        }

        private func write(_ s: String) {
            FileHandle.standardOutput.write(Data(s.utf8))
        }

        /// Cursor home, each line cut to `columns` and cleared to its end,
        /// at most `rows` lines (the last says how many were left out), then
        /// the rest of the screen cleared. No newline after the last line.
        static func inPlace(_ text: String, rows: Int, columns: Int) -> String {
            var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            if lines.last == "" { lines.removeLast() }
            if rows > 0, lines.count > rows {
                let hidden = lines.count - (rows - 1)
                lines = Array(lines.prefix(rows - 1)) + ["… \(hidden) more lines (make the terminal taller)"]
            }
            let body = lines.map { cut($0, columns) + "\u{1B}[K" }.joined(separator: "\n")
            return "\u{1B}[H" + body + "\u{1B}[J"
        }

        /// Cuts a line to `columns` visible characters; ANSI SGR sequences
        /// take no room, and a cut line ends with a colour reset.
        static func cut(_ line: String, _ columns: Int) -> String {
            guard columns > 0 else { return line }
            var out = ""
            var visible = 0
            var escape = false
            var cut = false
            for c in line {
                if escape {
                    out.append(c)
                    if c == "m" { escape = false }
                    continue
                }
                if c == "\u{1B}" {
                    escape = true
                    out.append(c)
                    continue
                }
                if visible == columns {
                    cut = true
                    break
                }
                out.append(c)
                visible += 1
            }
            if cut && out.contains("\u{1B}") { out += "\u{1B}[0m" }
            return out
        }

        static func terminalSize() -> (rows: Int, columns: Int) {
            var ws = winsize()
            guard ioctl(1, UInt(TIOCGWINSZ), &ws) == 0, ws.ws_row > 0, ws.ws_col > 0 else { return (24, 80) }
            return (Int(ws.ws_row), Int(ws.ws_col))
        }
    }
}
