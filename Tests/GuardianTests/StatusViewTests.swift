import DiskWatch
import Foundation
@testable import Platform
@testable import Remediate
import Replication
import Testing
@testable import guardian

/// `guardian status` as a person reads it: the seed's replica-table format,
/// colour on and off (`--color`, `NO_COLOR`, a terminal or not), and
/// `--watch` on a pipe and on a real pseudo-terminal.
@Suite struct StatusViewTests {
    static let now = Timestamps.parse("2026-11-25T10:30:05.000Z") ?? Date()
    static let utc = TimeZone(identifier: "UTC") ?? .current

    static let incident: IncidentSummary = {
        let json = #"{"id": 12, "database": "/data/app.db", "phase": "restoring", "outcome": "open", "cause": "corruption", "detectedAt": "2026-11-25T10:29:30.000Z"}"#
        // swiftlint:disable:next force_try
        return try! JSONDecoder().decode(IncidentSummary.self, from: Data(json.utf8))
    }()

    /// One database with a replica in each state, checkpoint health with a
    /// warning, integrity ok, its filesystem at warn, an open incident.
    static let doc = StatusDocument(
        version: "0.1.0", pid: 4242, startedAt: "2026-11-25T09:00:00.000Z", uptimeSeconds: 5405, config: "/etc/guardian/guardian.yml", state: "ready",
        databases: [
            DatabaseStatus(
                path: "/data/app.db", state: "open", pageSize: 4096, dbSize: 8_192_000, walSize: 4_120_032, txid: "00000000000004d2",
                lastCommit: "2026-11-25T10:30:04.900Z",
                checkpoint: CheckpointStatus(mode: "PASSIVE", busy: false, logFrames: 120, checkpointedFrames: 100, at: "2026-11-25T10:29:58.000Z"),
                checkpointResults: CheckpointCounts(ok: 12, busy: 3, failed: 0),
                replicas: [
                    ReplicaStatus(name: "backup", type: "s3", destination: "s3://backup/app-db", state: "Syncing", position: "00000000000004d2", lagMs: 150, lastSync: "2026-11-25T10:30:01.000Z", requests: 1300, bytes: 5_600_000, errors: 0),
                    ReplicaStatus(name: "nas", type: "sftp", destination: "sftp://backup@backup-server:22/backups", state: "Lagging", position: "00000000000004c0", lagMs: 1200, lastSync: "2026-11-25T10:30:00.000Z", requests: 900, bytes: 5_000_000, errors: 0),
                    ReplicaStatus(name: "dr", type: "s3", destination: "s3://dr/app-db", state: "Failing", position: "0000000000000400", lagMs: 65000, lastSync: "2026-11-24T23:59:59.000Z", error: "connection refused", consecutiveFailures: 4, requests: 80, bytes: 4_000_000, errors: 9),
                ]),
            DatabaseStatus(path: "/data/blog.db", state: "missing", error: "no such file"),
        ],
        disk: [MountStatus(
            mountPoint: "/data", paths: ["/data/app.db", "/data/blog.db"], totalBytes: 100_000_000_000, usedBytes: 82_100_000_000, availableBytes: 17_900_000_000,
            usedPercent: 82.1, inodesPercent: 3, forecastSecondsToFull: 7800, level: .warn, ballast: nil, lastRotation: nil)],
        health: [HealthStatus(
            path: "/data/app.db", mode: "auto", state: "remediating",
            checkpoint: CheckpointHealth(
                walSize: 4_120_032, dbSize: 8_192_000, walGrowthBytesPerSecond: nil, lastResult: nil, lastCompleteAt: nil, secondsSinceComplete: 90,
                starved: false, sqliteFullAt: nil, ioErrorAt: nil, freeBytes: nil, level: "warning", reasons: ["WAL is 4.1 MB, above wal-warn-size 4 MB"]),
            integrity: {
                var i = IntegrityHealth(state: "ok")
                i.lastCheckAt = "2026-11-25T10:25:00.000Z"
                i.lastCheckMs = 42
                return i
            }(),
            openIncidents: [incident],
            lastIncident: nil, updatedAt: "2026-11-25T10:30:05.000Z")])

    static func render(color: Bool) -> String {
        StatusTable.render(doc, StatusTable.Options(color: color, now: now, timeZone: utc))
    }

    static func stripANSI(_ s: String) -> String {
        s.replacingOccurrences(of: "\u{1B}\\[[0-9;?]*[A-Za-z]", with: "", options: .regularExpression)
    }

    @Test func plainTextInTheSeedFormat() {
        let text = Self.render(color: false)
        let expected = """
            guardian 0.1.0  pid 4242  ready  up \(Units.formatDuration(.seconds(5405)))
            config /etc/guardian/guardian.yml
            databases 2: 1 missing, 1 open  replicas 1 Failing, 1 Lagging, 1 Syncing  health 1 remediating  2 need a look (listed first)

            /data/app.db  [open]  txid 00000000000004d2  last commit 10:30:04  size \(Units.formatBytes(8_192_000))
              [Syncing] /data/app.db -> s3  Destination: s3://backup/app-db | Lag: 150ms | Last: 10:30:01
                  replica backup  position 00000000000004d2  1300 requests  \(Units.formatBytes(5_600_000)) shipped
              [Lagging] /data/app.db -> sftp  Destination: sftp://backup@backup-server:22/backups | Lag: 1200ms | Last: 10:30:00
                  replica nas  position 00000000000004c0  900 requests  \(Units.formatBytes(5_000_000)) shipped
              [Failing] /data/app.db -> s3  Destination: s3://dr/app-db | Lag: 65000ms | Last: 2026-11-24 23:59:59
                  replica dr  position 0000000000000400  80 requests  \(Units.formatBytes(4_000_000)) shipped  9 errors
                  error (4 in a row): connection refused
              WAL \(Units.formatBytes(4_120_032))  checkpoints ok 12 busy 3  last PASSIVE 100/120 frames at 10:29:58  complete \(Units.formatDuration(.seconds(90))) ago  [warning]
                  WAL is 4.1 MB, above wal-warn-size 4 MB
              integrity ok  checked 10:25:00 in 42ms  health remediating (auto)
              disk /data  used 82.1 %  inodes 3.0 %  full in \(Units.formatDuration(.seconds(7800)))  [warn]
              incident 12  restoring  since 10:29:30  (corruption)

            /data/blog.db  [missing]
              no such file
              no replicas configured
              disk /data  used 82.1 %  inodes 3.0 %  full in \(Units.formatDuration(.seconds(7800)))  [warn]

            disk
              /data  used 82.1 %  inodes 3.0 %  full in \(Units.formatDuration(.seconds(7800)))  [warn]

            """
        #expect(text == expected, "\(text)")
        #expect(!text.contains("\u{1B}"))
    }

    @Test func colourMarksStatesAndLevels() {
        let text = Self.render(color: true)
        #expect(text.contains("  \u{1B}[32m[Syncing]\u{1B}[0m /data/app.db -> s3  Destination: s3://backup/app-db | Lag: 150ms | Last: 10:30:01\n"))
        #expect(text.contains("  \u{1B}[33m[Lagging]\u{1B}[0m /data/app.db -> sftp"))
        #expect(text.contains("  \u{1B}[31m[Failing]\u{1B}[0m /data/app.db -> s3  Destination: s3://dr/app-db"))
        #expect(text.contains("\u{1B}[31merror (4 in a row): connection refused\u{1B}[0m"))
        #expect(text.contains("\u{1B}[33m[warn]\u{1B}[0m"))
        #expect(text.contains("\u{1B}[33m[warning]\u{1B}[0m"))
        #expect(text.contains("integrity \u{1B}[32mok\u{1B}[0m"))
        #expect(text.contains("\u{1B}[31mincident 12  restoring  since 10:29:30  (corruption)\u{1B}[0m"))
        #expect(text.contains("\u{1B}[31m[missing]\u{1B}[0m"))
        // The same text underneath.
        #expect(Self.stripANSI(text) == Self.render(color: false))
    }

    @Test func diskLevelsHaveTheirColours() {
        let p = StatusTable.Painter(on: true)
        #expect(p.level("x", .normal) == "\u{1B}[32mx\u{1B}[0m")
        #expect(p.level("x", .warn) == "\u{1B}[33mx\u{1B}[0m")
        #expect(p.level("x", .critical) == "\u{1B}[31mx\u{1B}[0m")
        #expect(p.level("x", .emergency) == "\u{1B}[31mx\u{1B}[0m")
        #expect(StatusTable.Painter(on: false).level("x", .emergency) == "x")
    }

    @Test func colourChoice() {
        #expect(ColorChoice.auto.enabled(isTTY: true, environment: [:]))
        #expect(ColorChoice.auto.enabled(isTTY: true, environment: ["NO_COLOR": ""]), "an empty NO_COLOR does not count")
        #expect(!ColorChoice.auto.enabled(isTTY: true, environment: ["NO_COLOR": "1"]))
        #expect(!ColorChoice.auto.enabled(isTTY: false, environment: [:]))
        #expect(ColorChoice.always.enabled(isTTY: false, environment: ["NO_COLOR": "1"]))
        #expect(!ColorChoice.never.enabled(isTTY: true, environment: [:]))
    }

    @Test func timesAreLocalWallClock() {
        let clock = StatusTable.Clock(now: Self.now, timeZone: TimeZone(identifier: "Asia/Bangkok") ?? Self.utc)
        #expect(clock.time("2026-11-25T10:30:01.000Z") == "17:30:01")
        #expect(clock.time("2026-11-24T10:30:01.000Z") == "2026-11-24 17:30:01")
        #expect(clock.time("not a time") == "not a time")
    }

    @Test func inPlaceFramesFitTheTerminal() {
        typealias S = StatusWatch.Screen
        let frame = S.inPlace("one\ntwo\nthree\nfour\nfive\n", rows: 3, columns: 80)
        #expect(frame == "\u{1B}[Hone\u{1B}[K\ntwo\u{1B}[K\n… 3 more lines (make the terminal taller)\u{1B}[K\u{1B}[J")
        #expect(S.inPlace("a\nb\n", rows: 24, columns: 80) == "\u{1B}[Ha\u{1B}[K\nb\u{1B}[K\u{1B}[J")
        #expect(S.cut("abcdef", 4) == "abcd")
        #expect(S.cut("\u{1B}[32mabcdef\u{1B}[0m", 3) == "\u{1B}[32mabc\u{1B}[0m")
        #expect(S.cut("\u{1B}[32mab\u{1B}[0m", 3) == "\u{1B}[32mab\u{1B}[0m")
        #expect(S.cut("abc", 3) == "abc")
    }

    // MARK: - The command against a running daemon

    struct Daemon {
        let dir: String
        let socket: String
        let child: ChildProcess

        static func start() async throws -> Daemon {
            let dir = try TestSupport.makeTempDir("status-view")
            let db = dir + "/app.db"
            try await sqlite3(db, "PRAGMA journal_mode=wal; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            try TestSupport.write("""
                state-dir: \(dir)/state
                status:
                  socket: \(dir)/g.sock
                dbs:
                  - path: \(db)
                    monitor-interval: 100ms
                    replicas:
                      - url: file://\(dir)/replica
                """, to: dir + "/g.yml")
            let child = try ChildProcess.start(TestSupport.guardianBinary, ["run", "--config", dir + "/g.yml", "--log-target", "stderr"])
            let d = Daemon(dir: dir, socket: dir + "/g.sock", child: child)
            let up = try await TestSupport.waitUntil {
                let r = try await guardian(["status", "--socket", d.socket, "--json"])
                return r.status == 0 && r.stdout.contains("\"Syncing\"")
            }
            if !up { throw TestFailure("daemon not ready: \(child.stderr)") }
            return d
        }

        func stop() async {
            child.signal(SIGTERM)
            await child.wait()
            child.removeFiles()
            TestSupport.cleanup(dir)
        }
    }

    /// Runs `guardian ARGS` on a pseudo-terminal (python's pty module) of
    /// `rows` x `columns`, sends SIGINT after `seconds`, and returns the exit
    /// code and everything written to the terminal.
    static func onTerminal(_ args: [String], seconds: Double, rows: Int = 40, columns: Int = 200, environment: [String: String] = [:]) async throws -> (code: Int, output: String) {
        let script = """
            import base64, fcntl, json, os, pty, select, signal, struct, sys, termios, time
            args, seconds, rows, cols = json.loads(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
            pid, fd = pty.fork()
            if pid == 0:
                os.execve(args[0], args, dict(os.environ, **json.loads(sys.argv[5])))
            fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            out = b""
            def pump(until):
                global out
                while time.time() < until:
                    r, _, _ = select.select([fd], [], [], 0.05)
                    if r:
                        try:
                            d = os.read(fd, 65536)
                        except OSError:
                            return
                        if not d:
                            return
                        out += d
            pump(time.time() + seconds)
            os.kill(pid, signal.SIGINT)
            pump(time.time() + 5)
            _, status = os.waitpid(pid, 0)
            print(json.dumps({"code": os.waitstatus_to_exitcode(status), "out": base64.b64encode(out).decode()}))
            """
        let argv = try String(decoding: JSONSerialization.data(withJSONObject: [TestSupport.guardianBinary] + args), as: UTF8.self)
        let env = try String(decoding: JSONSerialization.data(withJSONObject: environment), as: UTF8.self)
        let r = try await run("/usr/bin/python3", ["-c", script, argv, "\(seconds)", "\(rows)", "\(columns)", env])
        guard r.status == 0, let obj = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any],
              let code = obj["code"] as? Int, let b64 = obj["out"] as? String, let data = Data(base64Encoded: b64)
        else { throw TestFailure("pty helper failed: \(r.stderr)") }
        return (code, String(decoding: data, as: UTF8.self))
    }

    @Test(.timeLimit(.minutes(2)))
    func colourFollowsTheTerminalAndNoColor() async throws {
        let d = try await Daemon.start()
        do {
            // A file: no colour unless asked.
            let plain = try await guardian(["status", "--socket", d.socket])
            #expect(plain.status == 0 && !plain.stdout.contains("\u{1B}"))
            let forced = try await guardian(["status", "--socket", d.socket, "--color", "always"], environment: ["NO_COLOR": "1"])
            #expect(forced.stdout.contains("\u{1B}[32m[Syncing]\u{1B}[0m"))
            // A terminal: colour, unless NO_COLOR or --color never.
            // (An empty NO_COLOR counts as unset; the test runner may have set one.)
            let tty = try await Self.onTerminal(["status", "--socket", d.socket], seconds: 1.5, environment: ["NO_COLOR": ""])
            #expect(tty.output.contains("\u{1B}[32m[Syncing]\u{1B}[0m"), "\(tty.output)")
            let noColor = try await Self.onTerminal(["status", "--socket", d.socket], seconds: 1.5, environment: ["NO_COLOR": "1"])
            #expect(noColor.output.contains("[Syncing]") && !noColor.output.contains("\u{1B}["), "\(noColor.output)")
            let never = try await Self.onTerminal(["status", "--socket", d.socket, "--color", "never"], seconds: 1.5, environment: ["NO_COLOR": ""])
            #expect(never.output.contains("[Syncing]") && !never.output.contains("\u{1B}["))
        } catch {
            await d.stop()
            throw error
        }
        await d.stop()
    }

    /// A status client that hangs up before the reply must not take the
    /// daemon down (the reply is sent without SIGPIPE).
    @Test(.timeLimit(.minutes(2)))
    func clientsThatHangUpDoNotKillTheDaemon() async throws {
        let d = try await Daemon.start()
        do {
            let path = d.socket
            try await BlockingPool.shared.run {
                for _ in 0..<200 {
                    let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
                    var addr = try UnixSocketServer.address(path)
                    let rc = withUnsafePointer(to: &addr) {
                        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
                    }
                    if rc == 0 { _ = write(fd, "status\n", 7) }
                    close(fd)
                }
            }
            try await Task.sleep(for: .milliseconds(300))
            #expect(d.child.process.isRunning, "the daemon died: \(d.child.stderr)")
            let r = try await guardian(["status", "--socket", d.socket, "--json"])
            #expect(r.status == 0)
        } catch {
            await d.stop()
            throw error
        }
        await d.stop()
    }

    @Test(.timeLimit(.minutes(2)))
    func watchOnAPipePrintsSnapshots() async throws {
        let d = try await Daemon.start()
        do {
            let child = try ChildProcess.start(TestSupport.guardianBinary, ["status", "--socket", d.socket, "--watch", "0.2"])
            defer { child.removeFiles() }
            let three = await TestSupport.waitUntil { child.stdout.components(separatedBy: "\nconfig ").count > 3 }
            #expect(three, "\(child.stdout)")
            child.signal(SIGINT)
            #expect(await child.wait(timeout: .seconds(5)) == 0)
            let out = child.stdout
            #expect(!out.contains("\u{1B}"), "no escape codes on a pipe")
            let snapshots = out.components(separatedBy: "\n\nguardian ")
            #expect(snapshots.count >= 3)
            #expect(out.hasPrefix("guardian "))
            for s in snapshots { #expect(s.contains("[Syncing] ") && s.contains("  at ")) }

            // JSON Lines.
            let json = try ChildProcess.start(TestSupport.guardianBinary, ["status", "--socket", d.socket, "--watch", "0.2", "--json"])
            defer { json.removeFiles() }
            #expect(await TestSupport.waitUntil { json.stdout.split(separator: "\n").count >= 3 })
            json.signal(SIGTERM)
            #expect(await json.wait(timeout: .seconds(5)) == 0)
            for line in json.stdout.split(separator: "\n") {
                let obj = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
                #expect(obj?["state"] as? String == "ready")
            }

            // A number without --watch is refused.
            let r = try await guardian(["status", "--socket", d.socket, "5"])
            #expect(r.status == 64 && r.stderr.contains("only goes with --watch"))
            let tooFast = try await guardian(["status", "--socket", d.socket, "--watch", "0.01"])
            #expect(tooFast.status == 64)
        } catch {
            await d.stop()
            throw error
        }
        await d.stop()
    }

    @Test(.timeLimit(.minutes(2)))
    func watchOnATerminalRedrawsInPlaceAndRestoresTheCursor() async throws {
        let d = try await Daemon.start()
        do {
            let rows = 8
            let r = try await Self.onTerminal(["status", "--socket", d.socket, "--watch", "0.2"], seconds: 1.5, rows: rows, columns: 60)
            #expect(r.code == 0, "exit after SIGINT: \(r.code)")
            let out = r.output
            #expect(out.hasPrefix("\u{1B}[?25l\u{1B}[H\u{1B}[2J"), "hides the cursor and clears once")
            #expect(out.hasSuffix("\u{1B}[0m\u{1B}[?25h\r\n"), "shows the cursor again on exit")
            let frames = out.components(separatedBy: "\u{1B}[H").dropFirst(2)
            #expect(frames.count >= 3, "redrawn several times: \(out.debugDescription)")
            for frame in frames {
                let body = frame.components(separatedBy: "\u{1B}[J").first ?? ""
                let lines = body.components(separatedBy: "\r\n")
                #expect(lines.count <= rows, "never more lines than the terminal has")
                #expect(lines.allSatisfy { $0.hasSuffix("\u{1B}[K") })
                #expect(lines.allSatisfy { Self.stripANSI($0).count <= 60 })
                #expect(lines.last?.contains("more lines") == true)
            }
            // A daemon that goes away is reported in place, not fatal.
            await d.stop()
            let gone = try await Self.onTerminal(["status", "--socket", d.socket, "--watch", "0.2"], seconds: 1)
            #expect(gone.code == 0)
            #expect(gone.output.contains("guardian is not running (no daemon answers at \(d.socket))"))
        } catch {
            await d.stop()
            throw error
        }
    }
}
