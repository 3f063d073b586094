import Foundation
import Testing
@testable import DiskWatch
@testable import Platform
@testable import guardian

/// logrotate 3.21's scripts (prerotate, postrotate, firstaction, lastaction,
/// sharedscripts), compression commands (compresscmd, compressoptions,
/// compressext) and `su USER GROUP`, each compared with the real logrotate
/// on the same fixtures: `lr` for logrotate, `g` for guardian.
private final class ScriptTwin: LogrotateTwin {
    init() throws { try super.init("lrscripts", rootMode: 0o755) }  // `su` users must reach the logs

    func trace(_ dir: String) -> String { dir == lr ? root + "/trace-lr" : root + "/trace-g" }

    /// A script that appends its name and arguments to the trace of `dir`,
    /// then exits with `exit` (a shell script: logrotate's scripts are).
    func script(_ name: String, dir: String, exit status: String = "0") -> String {
        "echo \(name) \"$1\" \"$2\" >> \(trace(dir)); exit \(status)"
    }

    /// The trace with the directory replaced by DIR, one line per script run.
    func traceLines(_ dir: String) -> [String] {
        let text = (try? String(contentsOfFile: trace(dir), encoding: .utf8)) ?? ""
        return text.replacingOccurrences(of: dir, with: "DIR").split(separator: "\n").map(String.init)
    }

    func expectSameNames(_ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(DiskKit.names(lr) == DiskKit.names(g), comment, sourceLocation: sourceLocation)
    }

    func expectSameTrace(sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(traceLines(lr) == traceLines(g), sourceLocation: sourceLocation)
    }

    func writeRound(_ round: Int, files: [String] = ["app.log"]) {
        for file in files {
            each { DiskKit.append("\($0)/\(file)", (1...50).map { "round \(round) \(file) line \($0)\n" }.joined()) }
        }
    }

    /// logrotate's script block for `directive`.
    static func block(_ directive: String, _ text: String) -> String { "\(directive)\n\(text)\nendscript" }
}

/// A file's content, decompressed by its extension (.gz, .zst, .xz).
private func decompressed(_ path: String) throws -> String {
    let tool: [String]
    if path.hasSuffix(".zst") {
        tool = ["zstd", "-dc"]
    } else if path.hasSuffix(".xz") {
        tool = ["xz", "-dc"]
    } else if path.hasSuffix(".gz") {
        tool = ["gzip", "-dc"]
    } else {
        return (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw SystemError("open", path: path) }
    defer { close(fd) }
    let r = try DiskKit.run(tool, stdin: fd)
    guard r.succeeded else { throw SystemError("\(tool[0]) -dc (\(r.summary))", path: path, code: EIO) }
    return String(decoding: r.stdout, as: UTF8.self)
}

private func owner(_ path: String) -> (uid: uid_t, gid: gid_t, mode: mode_t)? {
    var st = stat()
    guard lstat(path, &st) == 0 else { return nil }
    return (st.st_uid, st.st_gid, st.st_mode & 0o7777)
}

@Suite(.serialized) struct DiskLogrotateScriptTests {
    // MARK: - Scripts

    @Test func sharedScriptsRunOnceWithThePatternsLikeLogrotate() throws {
        let t = try ScriptTwin()
        t.writeRound(1, files: ["a.log", "b.log"])
        let lrConf = ["rotate 2", "create", "sharedscripts"] + ["firstaction", "prerotate", "postrotate", "lastaction"].map {
            ScriptTwin.block($0, t.script($0, dir: t.lr))
        }
        #expect(try t.logrotate(lrConf.joined(separator: "\n"), pattern: "*.log").succeeded)
        var rule = LogRotationConfig(paths: [], rotate: 2)
        rule.sharedScripts = true
        rule.firstAction = .shell(t.script("firstaction", dir: t.g))
        rule.preRotate = .shell(t.script("prerotate", dir: t.g))
        rule.postRotate = .shell(t.script("postrotate", dir: t.g))
        rule.lastAction = .shell(t.script("lastaction", dir: t.g))
        let r = t.guardian(rule, pattern: "*.log")
        #expect(!r.events.contains { $0.level >= .error })
        t.expectSameNames()
        t.expectSameTrace()
        #expect(t.traceLines(t.g) == [
            "firstaction DIR/*.log  ", "prerotate DIR/*.log  ", "postrotate DIR/*.log  ", "lastaction DIR/*.log  ",
        ])
    }

    @Test func nosharedscriptsRunPerLogWithItsPathAndArchiveLikeLogrotate() throws {
        let t = try ScriptTwin()
        t.writeRound(1, files: ["a.log", "b.log"])
        let lrConf = ["rotate 2", "create", "nosharedscripts"] + ["firstaction", "prerotate", "postrotate", "lastaction"].map {
            ScriptTwin.block($0, t.script($0, dir: t.lr))
        }
        #expect(try t.logrotate(lrConf.joined(separator: "\n"), pattern: "*.log").succeeded)
        var rule = LogRotationConfig(paths: [], rotate: 2)
        rule.sharedScripts = false
        rule.firstAction = .shell(t.script("firstaction", dir: t.g))
        rule.preRotate = .shell(t.script("prerotate", dir: t.g))
        rule.postRotate = .shell(t.script("postrotate", dir: t.g))
        rule.lastAction = .shell(t.script("lastaction", dir: t.g))
        let r = t.guardian(rule, pattern: "*.log")
        #expect(!r.events.contains { $0.level >= .error })
        t.expectSameNames()
        t.expectSameTrace()
        #expect(t.traceLines(t.g) == [
            "firstaction DIR/*.log  ",
            "prerotate DIR/a.log ", "postrotate DIR/a.log DIR/a.log.1",
            "prerotate DIR/b.log ", "postrotate DIR/b.log DIR/b.log.1",
            "lastaction DIR/*.log  ",
        ])
    }

    @Test func aFailingSharedPrerotateRotatesNothingOfTheRule() throws {
        let t = try ScriptTwin()
        t.writeRound(1, files: ["a.log", "b.log"])
        let conf = ["rotate 2", "create", "sharedscripts", ScriptTwin.block("prerotate", t.script("prerotate", dir: t.lr, exit: "1")),
                    ScriptTwin.block("postrotate", t.script("postrotate", dir: t.lr)),
                    ScriptTwin.block("lastaction", t.script("lastaction", dir: t.lr))]
        #expect(!(try t.logrotate(conf.joined(separator: "\n"), pattern: "*.log")).succeeded)
        var rule = LogRotationConfig(paths: [], rotate: 2)
        rule.preRotate = .shell(t.script("prerotate", dir: t.g, exit: "1"))
        rule.postRotate = .shell(t.script("postrotate", dir: t.g))
        rule.lastAction = .shell(t.script("lastaction", dir: t.g))
        let r = t.guardian(rule, pattern: "*.log")
        #expect(r.events.contains { $0.event == .rotationScriptFailed && $0.metadata["script"] == "prerotate" })
        t.expectSameNames()
        t.expectSameTrace()
        #expect(DiskKit.names(t.g) == ["a.log", "b.log"])
        // logrotate still runs lastaction: logs were due.
        #expect(t.traceLines(t.g) == ["prerotate DIR/*.log  ", "lastaction DIR/*.log  "])
    }

    @Test func aFailingPerLogPrerotateLeavesOnlyThatLog() throws {
        let t = try ScriptTwin()
        t.writeRound(1, files: ["a.log", "b.log"])
        func pre(_ dir: String) -> String { "echo prerotate \"$1\" >> \(t.trace(dir)); case \"$1\" in *a.log) exit 1;; esac" }
        let conf = ["rotate 2", "create", "nosharedscripts", ScriptTwin.block("prerotate", pre(t.lr)),
                    ScriptTwin.block("postrotate", t.script("postrotate", dir: t.lr))]
        #expect(!(try t.logrotate(conf.joined(separator: "\n"), pattern: "*.log")).succeeded)
        var rule = LogRotationConfig(paths: [], rotate: 2)
        rule.sharedScripts = false
        rule.preRotate = .shell(pre(t.g))
        rule.postRotate = .shell(t.script("postrotate", dir: t.g))
        let r = t.guardian(rule, pattern: "*.log")
        #expect(RotationRunner.Result(actions: r.takeActions(), events: r.takeEvents(), problems: []).failed)
        t.expectSameNames()
        t.expectSameTrace()
        #expect(DiskKit.names(t.g) == ["a.log", "b.log", "b.log.1"])
    }

    @Test func aFailingPerLogPostrotateKeepsOnlyThatLogsOldArchives() throws {
        let t = try ScriptTwin()
        func post(_ dir: String) -> String { "echo postrotate \"$1\" \"$2\" >> \(t.trace(dir)); case \"$1\" in *a.log) exit 1;; esac" }
        for round in 1...2 {
            t.writeRound(round, files: ["a.log", "b.log"])
            let conf = ["rotate 1", "create", "compress", "nosharedscripts", ScriptTwin.block("postrotate", post(t.lr))]
            _ = try t.logrotate(conf.joined(separator: "\n"), pattern: "*.log")
            var rule = LogRotationConfig(paths: [], rotate: 1, compress: true)
            rule.sharedScripts = false
            rule.postRotate = .shell(post(t.g))
            let r = t.guardian(rule, pattern: "*.log")
            #expect(r.events.contains { $0.event == .postRotateFailed })
            // Round 2: logrotate renames a.log over the uncompressed a.log.1
            // its failed postrotate left (round 1's lines are gone); guardian
            // shifted it to a.log.2 first and keeps it (the data-losing
            // difference fixed before, issue 15).
            if round == 1 { t.expectSameNames() }
            t.expectSameTrace()
        }
        #expect(DiskKit.names(t.lr) == ["a.log", "a.log.1", "b.log", "b.log.1.gz"])
        #expect(DiskKit.names(t.g) == ["a.log", "a.log.1", "a.log.2", "b.log", "b.log.1.gz"])
        #expect(try DiskKit.content(t.g + "/a.log.2").contains("round 1 a.log line 50"))
        #expect(try decompressed(t.g + "/b.log.1.gz") == (try decompressed(t.lr + "/b.log.1.gz")))
    }

    @Test func aFailingFirstactionRotatesNothingAndSkipsLastaction() throws {
        let t = try ScriptTwin()
        t.writeRound(1)
        let conf = ["rotate 2", ScriptTwin.block("firstaction", t.script("firstaction", dir: t.lr, exit: "3")),
                    ScriptTwin.block("lastaction", t.script("lastaction", dir: t.lr))]
        #expect(!(try t.logrotate(conf.joined(separator: "\n"))).succeeded)
        var rule = LogRotationConfig(paths: [], rotate: 2)
        rule.firstAction = .shell(t.script("firstaction", dir: t.g, exit: "3"))
        rule.lastAction = .shell(t.script("lastaction", dir: t.g))
        let r = t.guardian(rule)
        #expect(r.events.contains { $0.event == .rotationScriptFailed && $0.metadata["script"] == "firstaction" })
        t.expectSameNames()
        t.expectSameTrace()
        #expect(DiskKit.names(t.g) == ["app.log"])
    }

    @Test func aFailingLastactionIsAnErrorAfterTheRotation() throws {
        let t = try ScriptTwin()
        t.writeRound(1)
        let conf = ["rotate 2", "create", "compress", ScriptTwin.block("lastaction", t.script("lastaction", dir: t.lr, exit: "1"))]
        #expect(!(try t.logrotate(conf.joined(separator: "\n"))).succeeded)
        var rule = LogRotationConfig(paths: [], rotate: 2, compress: true)
        rule.lastAction = .shell(t.script("lastaction", dir: t.g, exit: "1"))
        let r = t.guardian(rule)
        #expect(RotationRunner.Result(actions: r.takeActions(), events: r.takeEvents(), problems: []).failed)
        t.expectSameNames()
        t.expectSameTrace()
        #expect(DiskKit.names(t.g) == ["app.log", "app.log.1.gz"])
    }

    @Test func firstAndLastActionRunOnlyWhenALogIsDue() throws {
        let t = try ScriptTwin()
        t.writeRound(1)
        let conf = ["rotate 2", "size 1M", ScriptTwin.block("firstaction", t.script("firstaction", dir: t.lr)),
                    ScriptTwin.block("lastaction", t.script("lastaction", dir: t.lr))]
        #expect(try t.logrotate(conf.joined(separator: "\n"), force: false).succeeded)
        var rule = LogRotationConfig(paths: [], rotate: 2, size: 1 << 20)
        rule.firstAction = .shell(t.script("firstaction", dir: t.g))
        rule.lastAction = .shell(t.script("lastaction", dir: t.g))
        _ = t.guardian(rule, force: false)
        t.expectSameNames()
        t.expectSameTrace()
        #expect(t.traceLines(t.g).isEmpty)
    }

    @Test func severalPatternsArePassedAsLogrotatePassesThem() throws {
        let t = try ScriptTwin()
        t.writeRound(1, files: ["a.log", "b.log"])
        let conf = "\(t.lr)/a.log \(t.lr)/b.log {\nrotate 1\ncreate\nsharedscripts\n" + ScriptTwin.block("postrotate", t.script("postrotate", dir: t.lr)) + "\n}\n"
        #expect(try DiskKit.logrotate(conf, in: t.root, force: true).succeeded)
        var rule = LogRotationConfig(paths: [t.g + "/a.log", t.g + "/b.log"], rotate: 1)
        rule.postRotate = .shell(t.script("postrotate", dir: t.g))
        let r = DiskKit.rotator([rule], state: t.root + "/guardian-state.json")
        r.runScheduled(force: true)
        t.expectSameNames()
        t.expectSameTrace()
        #expect(t.traceLines(t.g) == ["postrotate DIR/a.log DIR/b.log  "])
    }

    @Test func aPlainPathAsAStringStillRuns() throws {
        let t = try ScriptTwin()
        t.writeRound(1)
        let script = t.root + "/reopen.sh"
        DiskKit.write(script, "#!/bin/sh\necho reopened >> \(t.root)/reopened\n", mode: 0o755)
        chmod(script, 0o755)
        var rule = LogRotationConfig(paths: [], rotate: 1)
        rule.postRotate = .shell(script)
        let r = t.guardian(rule)
        #expect(!r.events.contains { $0.level >= .error })
        #expect(try DiskKit.content(t.root + "/reopened") == "reopened\n")
    }

    @Test func aDryRunRunsNoScript() throws {
        let t = try ScriptTwin()
        t.writeRound(1)
        var rule = LogRotationConfig(paths: [t.g + "/app.log"], rotate: 1)
        rule.firstAction = .shell(t.script("firstaction", dir: t.g))
        rule.preRotate = .shell(t.script("prerotate", dir: t.g))
        rule.postRotate = .shell(t.script("postrotate", dir: t.g))
        var options = LogRotator.Options()
        options.dryRun = true
        let r = LogRotator(rules: [rule], protected: ProtectedFiles([]), options: options)
        r.runScheduled(force: true)
        let actions = r.takeActions()
        #expect(actions.map(\.kind) == [.firstaction, .prerotate, .rotate, .create, .postrotate])
        #expect(actions.first?.description.hasPrefix("would run firstaction sh -c") == true)
        #expect(t.traceLines(t.g).isEmpty)
        #expect(DiskKit.names(t.g) == ["app.log"])
    }

    @Test func aListScriptIsAnArgvWithoutShell() throws {
        let t = try ScriptTwin()
        t.writeRound(1)
        var rule = LogRotationConfig(paths: [], rotate: 1)
        // `$1` stays literal: no shell, no arguments added.
        rule.postRotate = ["touch", t.root + "/$1"]
        _ = t.guardian(rule)
        #expect(FileManager.default.fileExists(atPath: t.root + "/$1"))
    }

    // MARK: - Compression commands

    @Test(arguments: [
        ("/usr/bin/zstd", "-19", ".zst"), ("/usr/bin/xz", "-9", ".xz"), ("/usr/bin/gzip", "-9", ".gz"),
    ])
    func compresscmdMatchesLogrotate(cmd: String, options: String, ext: String) throws {
        let t = try ScriptTwin()
        for round in 1...4 {
            t.writeRound(round)
            let r = try t.logrotate("rotate 2\ncreate\ncompress\ncompresscmd \(cmd)\ncompressoptions \(options)")
            #expect(r.succeeded, "logrotate: \(r.summary)")
            var rule = LogRotationConfig(paths: [], rotate: 2, compress: true)
            rule.compressCommand = cmd
            rule.compressOptions = [options]
            let g = t.guardian(rule)
            #expect(!g.events.contains { $0.level >= .error }, "\(g.events)")
            t.expectSameNames("after round \(round)")
            for name in DiskKit.names(t.g) {
                #expect(try decompressed("\(t.lr)/\(name)") == (try decompressed("\(t.g)/\(name)")), "content of \(name)")
            }
        }
        #expect(DiskKit.names(t.g) == ["app.log", "app.log.1\(ext)", "app.log.2\(ext)"])
        #expect(try decompressed("\(t.g)/app.log.2\(ext)").contains("round 3 app.log line 50"))
    }

    @Test func compressextWithCopytruncateMatchesLogrotate() throws {
        let t = try ScriptTwin()
        for round in 1...3 {
            t.writeRound(round)
            #expect(try t.logrotate("rotate 3\ncompress\ncompresscmd zstd\ncompressext .zstd\ncopytruncate").succeeded)
            var rule = LogRotationConfig(paths: [], rotate: 3, compress: true, copyTruncate: true)
            rule.compressCommand = "zstd"
            rule.compressExt = ".zstd"
            let g = t.guardian(rule)
            #expect(!g.events.contains { $0.level >= .error }, "\(g.events)")
            t.expectSameNames("after round \(round)")
        }
        #expect(DiskKit.names(t.g) == ["app.log", "app.log.1.zstd", "app.log.2.zstd", "app.log.3.zstd"])
        let fd = open(t.g + "/app.log.3.zstd", O_RDONLY)
        defer { close(fd) }
        let out = try DiskKit.run(["zstd", "-dc"], stdin: fd)
        #expect(String(decoding: out.stdout, as: UTF8.self).contains("round 1 app.log line 50"))
        #expect(owner(t.g + "/app.log").map { $0.mode } == 0o644)
    }

    @Test func archivesOfAnotherCompressionCountForRotate() throws {
        let t = try ScriptTwin()
        DiskKit.write(t.g + "/app.log", "new\n")
        for i in 1...3 {
            let plain = t.g + "/old.\(i)"
            DiskKit.write(plain, "gzip \(i)\n")
            let fd = open(plain, O_RDONLY)
            let out = open(t.g + "/app.log.\(i).gz", O_WRONLY | O_CREAT, 0o644)
            _ = try Subprocess.runBlocking(["gzip", "-c"], stdin: fd, stdout: out, timeout: .seconds(10))
            close(fd)
            close(out)
            unlink(plain)
        }
        var rule = LogRotationConfig(paths: [], rotate: 2, compress: true)
        rule.compressCommand = "/usr/bin/xz"
        _ = t.guardian(rule)
        // app.log.1.gz moved to .2.gz, .2.gz and .3.gz beyond rotate 2 are gone.
        #expect(DiskKit.names(t.g) == ["app.log", "app.log.1.xz", "app.log.2.gz"])
        #expect(try decompressed(t.g + "/app.log.2.gz") == "gzip 1\n")
        #expect(try decompressed(t.g + "/app.log.1.xz") == "new\n")
    }

    // MARK: - su

    @Test func suRotatesAsTheUserAndOwnershipMatchesLogrotate() throws {
        let t = try ScriptTwin()
        let nobody = try #require(Accounts.uid("nobody"))
        let nogroup = try #require(Accounts.gid("nogroup"))
        // A directory of the user's, writable by its group too (refused without su).
        t.each { chown($0, nobody, nogroup); chmod($0, 0o775) }
        for round in 1...3 {
            t.writeRound(round)
            t.each { chmod($0 + "/app.log", 0o644) }
            let post = { (dir: String) in "id -u >> \(t.trace(dir))" }
            let r = try t.logrotate("rotate 2\ncompress\ndelaycompress\ncreate 0640 root root\nsu nobody nogroup\n" + ScriptTwin.block("postrotate", post(t.lr)))
            #expect(r.succeeded, "logrotate: \(r.summary)")
            var rule = LogRotationConfig(paths: [], rotate: 2, compress: true, delayCompress: true, createMode: 0o640, createOwner: "root", createGroup: "root")
            rule.suUser = "nobody"
            rule.suGroup = "nogroup"
            rule.postRotate = .shell(post(t.g))
            let g = t.guardian(rule)
            #expect(!g.events.contains { $0.level >= .error }, "\(g.events)")
            t.expectSameNames("after round \(round)")
            // Scripts run as the rotating program itself (root), not as the su user.
            t.expectSameTrace()
            #expect(t.traceLines(t.g).last == "0")
            for name in DiskKit.names(t.g) {
                let a = owner("\(t.lr)/\(name)")
                let b = owner("\(t.g)/\(name)")
                #expect(a?.uid == b?.uid && a?.gid == b?.gid && a?.mode == b?.mode, "owner of \(name): \(String(describing: a)) vs \(String(describing: b))")
                #expect(try decompressed("\(t.lr)/\(name)") == (try decompressed("\(t.g)/\(name)")), "content of \(name)")
            }
        }
        // The new log and the compressed archive are the user's (only root sets another owner).
        #expect(owner(t.g + "/app.log")?.uid == nobody)
        #expect(owner(t.g + "/app.log.2.gz")?.uid == nobody)
        // guardian's own thread is itself again.
        #expect(ThreadCredentials.current == ThreadCredentials(uid: 0, gid: 0))
    }

    @Test func suWithStreamedCopytruncateCompressMatchesLogrotate() throws {
        let t = try ScriptTwin()
        let nobody = try #require(Accounts.uid("nobody"))
        let nogroup = try #require(Accounts.gid("nogroup"))
        t.each { chown($0, nobody, nogroup); chmod($0, 0o777) }
        for round in 1...2 {
            t.writeRound(round)
            t.each { chmod($0 + "/app.log", 0o666) }
            #expect(try t.logrotate("rotate 2\ncompress\ncopytruncate\nsu nobody nogroup").succeeded)
            var rule = LogRotationConfig(paths: [], rotate: 2, compress: true, copyTruncate: true)
            rule.suUser = "nobody"
            rule.suGroup = "nogroup"
            let g = t.guardian(rule)
            #expect(!g.events.contains { $0.level >= .error }, "\(g.events)")
            t.expectSameNames("after round \(round)")
            for name in DiskKit.names(t.g) {
                let a = owner("\(t.lr)/\(name)")
                let b = owner("\(t.g)/\(name)")
                #expect(a?.uid == b?.uid && a?.gid == b?.gid, "owner of \(name)")
                #expect(try decompressed("\(t.lr)/\(name)") == (try decompressed("\(t.g)/\(name)")), "content of \(name)")
            }
        }
        #expect(owner(t.g + "/app.log.1.gz")?.uid == nobody)
        #expect(owner(t.g + "/app.log")?.uid == 0)
    }

    @Test func suRunsTheCompressCommandAsTheUserLikeLogrotate() throws {
        let t = try ScriptTwin()
        let nobody = try #require(Accounts.uid("nobody"))
        let nogroup = try #require(Accounts.gid("nogroup"))
        t.each { chown($0, nobody, nogroup); chmod($0, 0o755) }
        // A custom command: records who runs it and the file it compresses.
        let cmd = t.root + "/mycompress"
        DiskKit.write(cmd, "#!/bin/sh\necho \"$(id -u) $(id -g) $(id -G) $LOGROTATE_COMPRESSED_FILENAME\" >> \(t.root)/who\nexec gzip -c\n", mode: 0o755)
        chmod(cmd, 0o755)
        DiskKit.write(t.root + "/who", "", mode: 0o666)
        chmod(t.root + "/who", 0o666)
        t.writeRound(1)
        t.each { chmod($0 + "/app.log", 0o644) }
        #expect(try t.logrotate("rotate 1\ncreate\ncompress\ncompresscmd \(cmd)\nsu nobody nogroup").succeeded)
        var rule = LogRotationConfig(paths: [], rotate: 1, compress: true)
        rule.compressCommand = cmd
        rule.suUser = "nobody"
        rule.suGroup = "nogroup"
        let g = t.guardian(rule)
        #expect(!g.events.contains { $0.level >= .error }, "\(g.events)")
        t.expectSameNames()
        let who = try DiskKit.content(t.root + "/who").replacingOccurrences(of: t.lr, with: "DIR").replacingOccurrences(of: t.g, with: "DIR")
        let lines = who.split(separator: "\n").map(String.init)
        #expect(lines.count == 2)
        #expect(lines.first == lines.last, "logrotate's vs guardian's: \(lines)")
        #expect(lines.last?.hasPrefix("\(nobody) \(nogroup)") == true)
        #expect(lines.last?.hasSuffix("DIR/app.log.1") == true)
    }

    @Test func suWithoutWritePermissionFailsAndLosesNothing() throws {
        let t = try ScriptTwin()
        t.writeRound(1)
        // root's directory: nobody may not rename or create in it.
        let r = try t.logrotate("rotate 2\ncreate\nsu nobody nogroup")
        #expect(!r.succeeded)
        var rule = LogRotationConfig(paths: [], rotate: 2)
        rule.suUser = "nobody"
        rule.suGroup = "nogroup"
        let g = t.guardian(rule)
        #expect(RotationRunner.Result(actions: g.takeActions(), events: g.takeEvents(), problems: []).failed)
        t.expectSameNames()
        #expect(DiskKit.names(t.g) == ["app.log"])
        #expect(try DiskKit.content(t.g + "/app.log").contains("round 1 app.log line 50"))
    }

    @Test func threadCredentialsChangeOnlyTheCallingThread() throws {
        let dir = try DiskKit.tempDir("creds")
        defer { DiskKit.remove(dir) }
        chmod(dir, 0o777)
        let nobody = try #require(Accounts.uid("nobody"))
        let nogroup = try #require(Accounts.gid("nogroup"))
        // Another thread of the process, started before (a thread started
        // meanwhile would inherit the switched credentials), waits on a pipe.
        var go: [Int32] = [-1, -1]
        #expect(pipe(&go) == 0)
        let (readEnd, writeEnd) = (go[0], go[1])
        let other = Thread {
            var byte: UInt8 = 0
            _ = read(readEnd, &byte, 1)
            close(open(dir + "/other", O_CREAT | O_WRONLY, 0o600))
        }
        other.start()
        defer { close(readEnd); close(writeEnd) }
        try ThreadCredentials.with(ThreadCredentials(uid: nobody, gid: nogroup)) {
            close(open(dir + "/mine", O_CREAT | O_WRONLY, 0o600))
            // It creates a file meanwhile: still root's.
            var byte: UInt8 = 1
            _ = write(writeEnd, &byte, 1)
            while !FileManager.default.fileExists(atPath: dir + "/other") { usleep(1000) }
            // Without CAP_DAC_OVERRIDE now: a root-only file cannot be opened.
            #expect(open(dir + "/other", O_RDONLY) < 0)
        }
        #expect(owner(dir + "/mine")?.uid == nobody && owner(dir + "/mine")?.gid == nogroup)
        #expect(owner(dir + "/other")?.uid == 0)
        #expect(ThreadCredentials.current == ThreadCredentials(uid: 0, gid: 0))
        #expect(open(dir + "/mine", O_RDONLY) >= 0)
    }

    // MARK: - Configuration

    @Test func checkConfigReportsAMissingCompressCommandAndAnUnknownSuUser() {
        var rule = LogRotationConfig(paths: ["/var/log/app.log"], compress: true)
        rule.compressCommand = "/no/such/zstd"
        rule.suUser = "no-such-user-here"
        rule.postRotate = .shell("kill -HUP $(cat /run/app.pid)")
        let problems = DiskConfig(logs: [rule]).problems(protectedPaths: [])
        #expect(problems.contains { $0.isError && $0.key == "logs[0].compresscmd" })
        #expect(problems.contains { $0.isError && $0.key == "logs[0].su" && $0.message.contains("no-such-user-here") })
        // A shell script is not looked up as a program.
        #expect(!problems.contains { $0.key == "logs[0].postrotate" })
    }

    @Test func yamlScriptsCompressionAndSu() throws {
        let c = try GuardianConfig.parse(text: """
            disk:
              logs:
                - paths: [/var/log/app/*.log]
                  sharedscripts: false
                  prerotate: test -s "$1"
                  postrotate: /usr/local/bin/reopen-logs
                  firstaction: [logger, rotating]
                  lastaction: |
                    systemctl reload app
                  compress: true
                  compresscmd: /usr/bin/zstd
                  compressoptions: "-19 -T0"
                  su: www-data adm
                - paths: [/var/log/b.log]
                  compresscmd: xz
                  compressoptions: [-9, --threads=2]
                  compressext: .xz2
                  su: nobody
            """, file: "/etc/guardian/guardian.yml", environment: [:])
        let a = c.disk.logs[0]
        #expect(a.sharedScripts == false)
        #expect(a.preRotate == .shell("test -s \"$1\""))
        // A plain path still runs: as shell text it is the command.
        #expect(a.postRotate == .shell("/usr/local/bin/reopen-logs"))
        #expect(a.firstAction == .argv(["logger", "rotating"]))
        #expect(a.lastAction == .shell("systemctl reload app\n"))
        #expect(a.compressCommand == "/usr/bin/zstd" && a.compressOptions == ["-19", "-T0"])
        #expect(CompressProgram(a).ext == ".zst")
        #expect(a.suUser == "www-data" && a.suGroup == "adm")
        let b = c.disk.logs[1]
        #expect(b.sharedScripts)
        #expect(b.compressOptions == ["-9", "--threads=2"] && CompressProgram(b).ext == ".xz2")
        #expect(b.suUser == "nobody" && b.suGroup == nil)
        #expect(CompressProgram(LogRotationConfig(paths: [])).ext == ".gz")
        var other = LogRotationConfig(paths: [])
        other.compressCommand = "/opt/bin/mycompress"
        #expect(CompressProgram(other).ext == ".gz")
        #expect(DiskConfigTests.error("disk:\n  logs:\n    - paths: [/a.log]\n      prerotate: []\n")
            == "/etc/guardian/guardian.yml:4: disk.logs[0].prerotate: must not be an empty list")
    }
}
