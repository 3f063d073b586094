import Foundation
import Testing
@testable import DiskWatch
@testable import Platform
@testable import guardian

/// Two copies of one fixture, as in DiskRotationTests, but compared as
/// trees (olddir puts archives in subdirectories, or on another
/// filesystem): the real logrotate 3.21 works on `lr`, guardian on `g`;
/// afterwards both hold the same paths with the same types, modes, owners
/// and (decompressed) contents.
private final class TreeTwin: LogrotateTwin {
    init() throws { try super.init("naming") }

    /// `directives` gets the side's directory (for absolute olddirs).
    @discardableResult
    func logrotate(_ directives: (String) -> String, pattern: String = "app.log", force: Bool = true) throws -> ProcessOutcome {
        try logrotate(directives(lr), pattern: pattern, force: force)
    }

    @discardableResult
    func guardian(
        _ rule: (String) -> LogRotationConfig, pattern: String = "app.log", force: Bool = true,
        now: @escaping @Sendable () -> Date = { Date() }
    ) -> LogRotator {
        guardian(rule(g), pattern: pattern, force: force, now: now)
    }

    /// Relative path → "type mode uid:gid" of everything below `dir`.
    static func tree(_ dir: String, under prefix: String = "") -> [String: String] {
        var out: [String: String] = [:]
        for name in DiskKit.names(dir) {
            let path = dir + "/" + name
            var st = stat()
            guard lstat(path, &st) == 0 else { continue }
            let rel = prefix + name
            out[rel] = String(format: "%@ %04o %d:%d", st.isDirectory ? "d" : st.isRegular ? "f" : "?", st.st_mode & 0o7777, st.st_uid, st.st_gid)
            if st.isDirectory { out.merge(tree(path, under: rel + "/")) { $1 } }
        }
        return out
    }

    func expectSame(_ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let a = Self.tree(lr)
        let b = Self.tree(g)
        #expect(a == b, comment, sourceLocation: sourceLocation)
        for (name, kind) in a where kind.hasPrefix("f") && b[name] != nil {
            #expect(try DiskKit.content("\(lr)/\(name)") == DiskKit.content("\(g)/\(name)"), "content of \(name)", sourceLocation: sourceLocation)
        }
    }

    func writeRound(_ round: Int, file: String = "app.log") {
        each { DiskKit.append("\($0)/\(file)", (1...3).map { "round \(round) line \($0)\n" }.joined()) }
    }

    func names(_ sub: String = "") -> [String] { DiskKit.names(g + sub) }
}

private func rule(_ configure: (inout LogRotationConfig) -> Void) -> (String) -> LogRotationConfig {
    var r = LogRotationConfig(paths: [])
    configure(&r)
    return { _ in r }
}

@Suite(.serialized) struct DiskLogrotateNamingTests {
    // MARK: - dateformat, dateyesterday

    @Test func dateformatSortsArchivesByTheirDateLikeLogrotate() throws {
        // -%d%m%Y names do not sort by date: 31121999 is the oldest by date,
        // the newest by name. logrotate keeps the newest by date.
        let t = try TreeTwin()
        t.each { dir in
            DiskKit.write(dir + "/app.log", "live\n")
            for (stamp, text) in [("01022020", "feb 2020"), ("15012020", "jan 2020"), ("31121999", "dec 1999")] {
                DiskKit.write(dir + "/app.log-\(stamp)", text + "\n")
            }
        }
        let lr = try t.logrotate { _ in "rotate 2\ndateext\ndateformat -%d%m%Y\ncreate" }
        #expect(lr.succeeded, "logrotate: \(lr.summary)")
        let custom = rule { $0.rotate = 2; $0.dateExt = true; $0.dateFormat = "-%d%m%Y" }
        t.guardian(custom)
        try t.expectSame()
        let today = LogRotator.dateStamp(Date(), format: "-%d%m%Y")
        #expect(t.names() == ["app.log", "app.log-01022020", "app.log\(today)"].sorted())

        // Rotating again the same day makes the same name: both refuse, nothing is lost.
        t.writeRound(2)
        #expect(!(try t.logrotate { _ in "rotate 2\ndateext\ndateformat -%d%m%Y\ncreate" }).succeeded)
        let again = t.guardian(custom)
        #expect(again.takeActions().contains { $0.kind == .fail && $0.detail.contains("already exists") })
        try t.expectSame()
        #expect(try DiskKit.content(t.g + "/app.log").contains("round 2"))
    }

    @Test func dateformatWithEpochSecondsMatchesLogrotate() throws {
        let t = try TreeTwin()
        t.each { dir in
            DiskKit.write(dir + "/app.log", "live\n")
            for epoch in [1_500_000_000, 1_400_000_000, 1_600_000_000] { DiskKit.write(dir + "/app.log-\(epoch)", "at \(epoch)\n") }
            DiskKit.write(dir + "/app.log-99", "not an archive of this format\n")
        }
        try t.logrotate { _ in "rotate 3\ndateext\ndateformat -%s\ncreate" }
        // The second logrotate named its archive after: guardian rotates "at" the same second.
        let made = try #require(DiskKit.names(t.lr).first { $0.hasPrefix("app.log-1") && !["app.log-1500000000", "app.log-1400000000", "app.log-1600000000"].contains($0) })
        let epoch = try #require(Double(made.dropFirst("app.log-".count)))
        t.guardian(rule { $0.rotate = 3; $0.dateExt = true; $0.dateFormat = "-%s" }, now: { Date(timeIntervalSince1970: epoch) })
        try t.expectSame()
        #expect(t.names() == ["app.log", "app.log-1500000000", "app.log-1600000000", "app.log-99", made].sorted())
    }

    @Test func dateyesterdayAndTheHourlyDefaultMatchLogrotate() throws {
        let cases: [(String, (inout LogRotationConfig) -> Void)] = [
            ("rotate 2\ndateext\ndateyesterday\ncreate", { $0.dateExt = true; $0.dateYesterday = true }),
            ("rotate 2\nhourly\ndateext\ncreate", { $0.dateExt = true; $0.frequency = .hourly }),
            // dateyesterday takes noon of the day before, like logrotate.
            ("rotate 2\ndateext\ndateformat -%Y-%m-%d_%H\ndateyesterday\ncompress\ncreate",
             { $0.dateExt = true; $0.dateFormat = "-%Y-%m-%d_%H"; $0.dateYesterday = true; $0.compress = true }),
        ]
        for (directives, configure) in cases {
            let t = try TreeTwin()
            t.writeRound(1)
            let r = try t.logrotate { _ in directives }
            #expect(r.succeeded, "logrotate: \(r.summary)")
            t.guardian(rule { $0.rotate = 2; configure(&$0) })
            try t.expectSame(Comment(rawValue: directives))
        }
        let yesterday = Date().addingTimeInterval(-86400)
        let t = try TreeTwin()
        t.writeRound(1)
        t.guardian(rule { $0.rotate = 2; $0.dateExt = true; $0.dateFormat = "-%Y-%m-%d_%H"; $0.dateYesterday = true })
        #expect(t.names().contains("app.log" + LogRotator.dateStamp(yesterday, format: "-%Y-%m-%d") + "_12"))
    }

    @Test func namingKeysParseAndBadValuesAreRefused() throws {
        let c = try DiskConfigTests.parse("""
            disk:
              logs:
                - paths: [/var/log/app/app.log]
                  rotate: -1
                  dateext: true
                  dateformat: "-%Y%m%d-%s"
                  dateyesterday: true
                  olddir: archive
                  createolddir: 0750 nobody nogroup
                  start: 0
                  extension: .log
                  minage: 2d
                  copy: true
            """)
        let r = try #require(c.disk.logs.first)
        #expect(r.rotate == -1 && r.dateFormat == "-%Y%m%d-%s" && r.dateYesterday && r.oldDir == "archive")
        #expect(r.createOldDir == LogRotationConfig.FileCreation(mode: 0o750, owner: "nobody", group: "nogroup"))
        #expect(r.start == 0 && r.fileExtension == ".log" && r.minAge == .seconds(2 * 86400) && r.copy)

        func error(_ keys: String) -> String {
            DiskConfigTests.error("disk:\n  logs:\n    - paths: [/var/log/app.log]\n" + keys.split(separator: "\n").map { "      \($0)\n" }.joined())
        }
        #expect(error("dateformat: \"-%Y%j\"").contains("dateformat"))
        #expect(error("dateformat: \"-%Y%j\"").contains("%Y %m %d %H %M %S %V and %s"))
        #expect(error("dateformat: \"-%Y/%m\"").contains("must not contain /"))
        #expect(error("rotate: -2").contains("rotate"))
        #expect(error("createolddir: 0750").contains("needs olddir"))
        #expect(error("olddir: old\ncreateolddir: rwx").contains("MODE [OWNER [GROUP]]"))
        #expect(error("copy: true\ncreate: 0640 app adm").contains("copy and create"))
        #expect(error("start: -1").contains("start"))
        #expect(error("extension: a/b").contains("must not contain /"))

        // The same checks for rules not read from YAML (logrotate files mapped onto the fields).
        var mapped = LogRotationConfig(paths: ["/var/log/app.log"])
        mapped.dateFormat = "-%Y%j"
        mapped.createOldDir = .init(mode: 0o750, owner: "no-such-user-here")
        mapped.rotate = -2
        let keys = DiskConfig(logs: [mapped]).problems(protectedPaths: []).filter(\.isError).map(\.key)
        #expect(keys.contains("logs[0].dateformat") && keys.contains("logs[0].createolddir") && keys.contains("logs[0].rotate"))
    }

    // MARK: - olddir, createolddir

    @Test func relativeOlddirCreatedWithModeAndOwnersLikeLogrotate() throws {
        let t = try TreeTwin()
        for round in 1...4 {
            t.writeRound(round)
            let r = try t.logrotate { _ in "rotate 2\ncompress\ndelaycompress\nolddir old/archive\ncreateolddir 0750 nobody nogroup\ncreate" }
            #expect(r.succeeded, "logrotate: \(r.summary)")
            t.guardian(rule {
                $0.rotate = 2; $0.compress = true; $0.delayCompress = true; $0.oldDir = "old/archive"
                $0.createOldDir = .init(mode: 0o750, owner: "nobody", group: "nogroup")
            })
            try t.expectSame("after round \(round)")
        }
        #expect(t.names() == ["app.log", "old"])
        #expect(t.names("/old/archive") == ["app.log.1", "app.log.2.gz"])
        #expect(TreeTwin.tree(t.g)["old"]?.hasPrefix("d 0750") == true)
    }

    @Test func aWildcardBesideItsOlddirRotatesOnlyTheLogsLikeLogrotate() throws {
        // `*` also matches the olddir: a directory is no log, skipped without a word.
        let t = try TreeTwin()
        for round in 1...3 {
            t.writeRound(round)
            let r = try t.logrotate({ _ in "rotate 2\nolddir old\ncreateolddir 0755 root root\ncreate" }, pattern: "*")
            #expect(r.succeeded, "logrotate: \(r.summary)")
            let rotator = t.guardian(rule { $0.rotate = 2; $0.oldDir = "old"; $0.createOldDir = .init(mode: 0o755, owner: "root", group: "root") }, pattern: "*")
            #expect(!rotator.takeActions().contains { $0.kind == .fail || $0.kind == .refuse })
            try t.expectSame("round \(round)")
        }
        #expect(t.names("/old") == ["app.log.1", "app.log.2"])
    }

    @Test func absoluteOlddirWithDateextMatchesLogrotate() throws {
        let t = try TreeTwin()
        t.each { mkdir($0 + "/archives", 0o700) }
        t.writeRound(1)
        try t.logrotate { dir in "rotate 2\ndateext\ncompress\nolddir \(dir)/archives\ncreate" }
        t.guardian { dir in
            var r = LogRotationConfig(paths: [], rotate: 2, compress: true, dateExt: true)
            r.oldDir = dir + "/archives"
            return r
        }
        try t.expectSame()
        #expect(t.names("/archives") == ["app.log" + LogRotator.dateStamp(Date(), format: "-%Y%m%d") + ".gz"])
    }

    @Test func aDryRunDoesNotCreateTheOlddir() throws {
        let t = try TreeTwin()
        t.writeRound(1)
        var r = LogRotationConfig(paths: [t.g + "/app.log"], rotate: 2)
        r.oldDir = "old"
        r.createOldDir = .init(mode: 0o700)
        let rotator = DiskKit.rotator([r], state: nil)
        var options = rotator.options
        options.dryRun = true
        let dry = LogRotator(rules: [r], protected: ProtectedFiles([]), options: options)
        dry.runScheduled(force: true)
        let actions = dry.takeActions()
        #expect(actions.contains { $0.kind == .create && $0.path == t.g + "/old" && $0.dryRun })
        #expect(actions.contains { $0.kind == .skip && $0.path == t.g + "/app.log" })
        #expect(t.names() == ["app.log"])
    }

    @Test func missingOlddirWithoutCreateolddirFailsAndChangesNothing() throws {
        let t = try TreeTwin()
        t.writeRound(1)
        t.each { DiskKit.write($0 + "/app.log.1", "older\n") }
        let before = TreeTwin.tree(t.g)
        let lr = try t.logrotate { _ in "rotate 2\nolddir missing\ncreate" }
        #expect(!lr.succeeded)
        let rotator = t.guardian(rule { $0.rotate = 2; $0.oldDir = "missing" })
        let actions = rotator.takeActions()
        #expect(actions.contains { $0.kind == .fail && $0.detail.contains("createolddir") })
        #expect(rotator.takeEvents().contains { $0.event == .logRotationFailed && $0.level == .error })
        try t.expectSame()
        #expect(TreeTwin.tree(t.g) == before)
        #expect(try DiskKit.content(t.g + "/app.log") == "round 1 line 1\nround 1 line 2\nround 1 line 3\n")
    }

    @Test func olddirOnAnotherFilesystemNeedsCopyOrCopytruncateLikeLogrotate() throws {
        let fs = try DiskKit.Tmpfs(size: "4m")
        defer { fs.unmount() }
        let t = try TreeTwin()
        mkdir(fs.path + "/lr", 0o755)
        mkdir(fs.path + "/g", 0o755)
        func olddir(_ dir: String) -> String { fs.path + (dir == t.lr ? "/lr" : "/g") }
        func expectSameArchives(_ comment: Comment) throws {
            #expect(TreeTwin.tree(fs.path + "/lr") == TreeTwin.tree(fs.path + "/g"), comment)
            for name in DiskKit.names(fs.path + "/lr") {
                #expect(try DiskKit.content(fs.path + "/lr/" + name) == DiskKit.content(fs.path + "/g/" + name), comment)
            }
        }
        t.writeRound(1)

        // A rename cannot cross filesystems: refused, nothing changed.
        #expect(!(try t.logrotate { "rotate 2\nolddir \(olddir($0))\ncreate" }).succeeded)
        let refused = t.guardian { dir in
            var r = LogRotationConfig(paths: [], rotate: 2)
            r.oldDir = olddir(dir)
            return r
        }
        #expect(refused.takeActions().contains { $0.kind == .fail && $0.detail.contains("another filesystem") })
        try t.expectSame()
        try expectSameArchives("refused")
        #expect(DiskKit.names(fs.path + "/g").isEmpty)

        // copytruncate: the copy goes there, the log is emptied.
        #expect(try t.logrotate { "rotate 2\nolddir \(olddir($0))\ncopytruncate" }.succeeded)
        t.guardian { dir in
            var r = LogRotationConfig(paths: [], rotate: 2, copyTruncate: true)
            r.oldDir = olddir(dir)
            return r
        }
        try t.expectSame()
        try expectSameArchives("copytruncate")
        #expect(DiskKit.names(fs.path + "/g") == ["app.log.1"])

        // copy: the copy goes there, the log stays as it was.
        t.writeRound(2)
        #expect(try t.logrotate { "rotate 2\nolddir \(olddir($0))\ncopy" }.succeeded)
        t.guardian { dir in
            var r = LogRotationConfig(paths: [], rotate: 2)
            r.copy = true
            r.oldDir = olddir(dir)
            return r
        }
        try t.expectSame()
        try expectSameArchives("copy")
        #expect(DiskKit.names(fs.path + "/g") == ["app.log.1", "app.log.2"])
        #expect(try DiskKit.content(t.g + "/app.log").contains("round 2"))
    }

    // MARK: - start, extension, rotate -1

    @Test func startZeroAndStartFiveNumberArchivesLikeLogrotate() throws {
        for start in [0, 5] {
            let t = try TreeTwin()
            for round in 1...4 {
                t.writeRound(round)
                try t.logrotate { _ in "rotate 2\nstart \(start)\ncompress\ncreate" }
                t.guardian(rule { $0.rotate = 2; $0.start = start; $0.compress = true })
                try t.expectSame("start \(start), round \(round)")
            }
            #expect(t.names() == ["app.log", "app.log.\(start).gz", "app.log.\(start + 1).gz"])
            #expect(try DiskKit.content(t.g + "/app.log.\(start + 1).gz").contains("round 3"))
        }
    }

    @Test func extensionStaysLastInArchiveNamesLikeLogrotate() throws {
        let cases: [(String, (inout LogRotationConfig) -> Void, [String])] = [
            ("rotate 2\nextension .log\ncompress\ndelaycompress\ncreate",
             { $0.compress = true; $0.delayCompress = true }, ["app.1.log", "app.2.log.gz", "app.log"]),
            ("rotate 2\nextension .log\ndateext\ncreate",
             { $0.dateExt = true }, ["app" + LogRotator.dateStamp(Date(), format: "-%Y%m%d") + ".log", "app.log"]),
            // An extension the log does not end with changes nothing.
            ("rotate 2\nextension .txt\ncreate", { _ in }, ["app.log", "app.log.1", "app.log.2"]),
        ]
        for (directives, configure, expected) in cases {
            let t = try TreeTwin()
            for round in 1...3 {
                t.writeRound(round)
                _ = try t.logrotate { _ in directives }
                t.guardian(rule { $0.rotate = 2; $0.fileExtension = directives.contains(".txt") ? ".txt" : ".log"; configure(&$0) })
                try t.expectSame(Comment(rawValue: "\(directives), round \(round)"))
            }
            #expect(t.names() == expected, Comment(rawValue: directives))
        }
    }

    @Test func rotateMinusOneKeepsEveryArchiveLikeLogrotate() throws {
        let t = try TreeTwin()
        for round in 1...14 {
            t.writeRound(round)
            try t.logrotate { _ in "rotate -1\ncompress\ncreate" }
            t.guardian(rule { $0.rotate = -1; $0.compress = true })
            try t.expectSame("round \(round)")
        }
        #expect(t.names().count == 15)
        #expect(try DiskKit.content(t.g + "/app.log.14.gz").contains("round 1 line 1"))

        // What else deletes archives leaves them too.
        var st = stat()
        stat(t.g + "/app.log", &st)
        let rotator = DiskKit.rotator([LogRotationConfig(paths: [t.g + "/app.log"], rotate: -1)], state: nil)
        #expect(rotator.deleteBeyondPolicy(device: UInt64(st.st_dev)) == 0)
        #expect(t.names().count == 15)
    }

    @Test func rotateMinusOneWithMaxageAndDateextMatchesLogrotate() throws {
        let t = try TreeTwin()
        t.each { dir in
            DiskKit.write(dir + "/app.log", "live\n")
            for (i, days) in [(1, 3.0), (2, 10.0), (3, 20.0), (4, 40.0)] {
                DiskKit.write(dir + "/app.log.\(i)", "numbered \(i)\n")
                DiskKit.setMTime(dir + "/app.log.\(i)", daysAgo: days)
            }
        }
        try t.logrotate { _ in "rotate -1\nmaxage 15\ncreate" }
        t.guardian(rule { $0.rotate = -1; $0.maxAge = .seconds(15 * 86400) })
        try t.expectSame("numbered")
        #expect(t.names() == ["app.log", "app.log.1", "app.log.2", "app.log.3"])

        let d = try TreeTwin()
        d.each { dir in
            DiskKit.write(dir + "/app.log", "live\n")
            for day in 1...9 {
                DiskKit.write(dir + "/app.log-2020010\(day)", "day \(day)\n")
                DiskKit.setMTime(dir + "/app.log-2020010\(day)", daysAgo: Double(30 - day) + 0.5)
            }
        }
        try d.logrotate { _ in "rotate -1\ndateext\nmaxage 25\ncreate" }
        d.guardian(rule { $0.rotate = -1; $0.dateExt = true; $0.maxAge = .seconds(25 * 86400) })
        try d.expectSame("dated")
        #expect(d.names().count == 1 + 4 + 1)
    }

    @Test func rotateMinusOneWithStartZeroKeepsTheOldestWhereLogrotateLosesIt() throws {
        // logrotate 3.21 counts the archives from its highest number and
        // shifts one too few with start 0: app.log.2 overwrites app.log.3.
        // guardian's choice: every archive kept.
        let t = try TreeTwin()
        t.each { dir in
            DiskKit.write(dir + "/app.log", "live\n")
            for i in 0...3 { DiskKit.write(dir + "/app.log.\(i)", "arch \(i)\n") }
        }
        try t.logrotate { _ in "rotate -1\nstart 0\ncreate" }
        t.guardian(rule { $0.rotate = -1; $0.start = 0 })
        #expect(DiskKit.names(t.lr) == ["app.log", "app.log.0", "app.log.1", "app.log.2", "app.log.3"])
        #expect(try DiskKit.content(t.lr + "/app.log.3") == "arch 2\n")
        #expect(t.names() == ["app.log", "app.log.0", "app.log.1", "app.log.2", "app.log.3", "app.log.4"])
        for (i, text) in [(0, "live\n"), (1, "arch 0\n"), (4, "arch 3\n")] {
            #expect(try DiskKit.content(t.g + "/app.log.\(i)") == text)
        }
    }

    // MARK: - minage, maxsize, copy

    @Test func minageHoldsBackAYoungLogButNotMaxsizeLikeLogrotate() throws {
        let t = try TreeTwin()
        t.each { dir in
            DiskKit.write(dir + "/young.log", String(repeating: "y", count: 100))
            DiskKit.write(dir + "/old.log", String(repeating: "o", count: 100))
            DiskKit.setMTime(dir + "/old.log", daysAgo: 3)
            DiskKit.write(dir + "/big.log", String(repeating: "b", count: 300))
            DiskKit.write(dir + "/edge.log", String(repeating: "e", count: 100))
            DiskKit.setMTime(dir + "/edge.log", daysAgo: 1.9)
        }
        // All four last rotated in 2020: daily is due for each.
        let logs = ["young", "old", "big", "edge"]
        DiskKit.write(t.root + "/logrotate.state", "logrotate state -- version 2\n"
            + logs.map { "\"\(t.lr)/\($0).log\" 2020-1-1-0:0:0\n" }.joined(), mode: 0o600)
        var state = RotationState()
        for name in logs { state.logs[t.g + "/\(name).log"] = .init(Date(timeIntervalSince1970: 1_577_836_800)) }
        try state.save(to: t.guardianState)

        try t.logrotate({ _ in "rotate 1\ndaily\nminage 2\nmaxsize 200\ncreate" }, pattern: "*.log", force: false)
        t.guardian(rule { $0.rotate = 1; $0.frequency = .daily; $0.minAge = .seconds(2 * 86400); $0.maxSize = 200 }, pattern: "*.log", force: false)
        try t.expectSame()
        #expect(t.names() == ["big.log", "big.log.1", "edge.log", "old.log", "old.log.1", "young.log"])

        // With `size` (no frequency) minage does not apply either.
        let s = try TreeTwin()
        s.each { DiskKit.write($0 + "/app.log", String(repeating: "y", count: 100)) }
        try s.logrotate({ _ in "rotate 1\nsize 50\nminage 2\ncreate" }, force: false)
        s.guardian(rule { $0.rotate = 1; $0.size = 50; $0.minAge = .seconds(2 * 86400) }, force: false)
        try s.expectSame()
        #expect(s.names() == ["app.log", "app.log.1"])
    }

    @Test func copyLeavesTheLogAsItWasLikeLogrotate() throws {
        for compress in [false, true] {
            let t = try TreeTwin()
            var st = stat()
            t.writeRound(0)
            stat(t.g + "/app.log", &st)
            let inode = st.st_ino
            for round in 1...3 {
                t.writeRound(round)
                try t.logrotate { _ in "rotate 2\ncopy" + (compress ? "\ncompress" : "") }
                let rotator = t.guardian(rule { $0.rotate = 2; $0.copy = true; $0.compress = compress })
                #expect(rotator.takeActions().contains { $0.kind == .copy })
                try t.expectSame("compress \(compress), round \(round)")
            }
            stat(t.g + "/app.log", &st)
            #expect(st.st_ino == inode)
            #expect(try DiskKit.content(t.g + "/app.log").contains("round 0 line 1"))
            #expect(try DiskKit.content(t.g + "/app.log").contains("round 3 line 3"))
            #expect(t.names() == (compress ? ["app.log", "app.log.1.gz", "app.log.2.gz"] : ["app.log", "app.log.1", "app.log.2"]))
        }
    }
}
