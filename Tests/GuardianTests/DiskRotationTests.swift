import Foundation
import Testing
@testable import DiskWatch
@testable import Platform

/// Two copies of one fixture: the real logrotate works on `lr`, guardian on
/// `g`; afterwards both must hold the same file names with the same contents.
private final class Twin: LogrotateTwin {
    init() throws { try super.init("twin") }

    /// Same names; same (decompressed) contents.
    func expectSame(_ comment: Comment? = nil, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let a = DiskKit.names(lr)
        let b = DiskKit.names(g)
        #expect(a == b, comment, sourceLocation: sourceLocation)
        for name in a where b.contains(name) {
            let x = try DiskKit.content("\(lr)/\(name)")
            let y = try DiskKit.content("\(g)/\(name)")
            #expect(x == y, "content of \(name)", sourceLocation: sourceLocation)
        }
    }

    func writeRound(_ round: Int, file: String = "app.log") {
        each { DiskKit.append("\($0)/\(file)", (1...3).map { "round \(round) line \($0)\n" }.joined()) }
    }
}

@Suite struct DiskRotationTests {
    // MARK: - Against the real logrotate

    @Test func rotateThreeCompressDelaycompressMatchesLogrotate() throws {
        let t = try Twin()
        for round in 1...6 {
            t.writeRound(round)
            let r = try t.logrotate("rotate 3\ncompress\ndelaycompress\ncreate")
            #expect(r.succeeded, "logrotate: \(r.summary)")
            _ = t.guardian(LogRotationConfig(paths: [], rotate: 3, compress: true, delayCompress: true))
            try t.expectSame("after round \(round)")
        }
        #expect(DiskKit.names(t.g) == ["app.log", "app.log.1", "app.log.2.gz", "app.log.3.gz"])
        #expect(try DiskKit.content(t.g + "/app.log.3.gz").contains("round 4 line 1"))
    }

    @Test func rotateTwoCompressMatchesLogrotate() throws {
        let t = try Twin()
        for round in 1...4 {
            t.writeRound(round)
            try t.logrotate("rotate 2\ncompress\ncreate")
            _ = t.guardian(LogRotationConfig(paths: [], rotate: 2, compress: true))
            try t.expectSame("after round \(round)")
        }
        #expect(DiskKit.names(t.g) == ["app.log", "app.log.1.gz", "app.log.2.gz"])
    }

    @Test func rotateZeroKeepsNothingLikeLogrotate() throws {
        let t = try Twin()
        for round in 1...2 {
            t.writeRound(round)
            try t.logrotate("rotate 0\ncreate")
            _ = t.guardian(LogRotationConfig(paths: [], rotate: 0))
            try t.expectSame()
        }
        #expect(DiskKit.names(t.g) == ["app.log"])
    }

    @Test func copytruncateMatchesLogrotateAndKeepsTheInode() throws {
        let t = try Twin()
        var st = stat()
        t.writeRound(0)
        stat(t.g + "/app.log", &st)
        let inode = st.st_ino
        for round in 1...3 {
            t.writeRound(round)
            try t.logrotate("rotate 2\ncopytruncate")
            _ = t.guardian(LogRotationConfig(paths: [], rotate: 2, copyTruncate: true))
            try t.expectSame()
        }
        stat(t.g + "/app.log", &st)
        #expect(st.st_ino == inode)
        #expect(st.st_size == 0)
        #expect(DiskKit.names(t.g) == ["app.log", "app.log.1", "app.log.2"])
    }

    @Test func createModeOwnerGroupMatchesLogrotate() throws {
        let t = try Twin()
        t.writeRound(1)
        try t.logrotate("rotate 1\ncreate 0640 nobody nogroup")
        _ = t.guardian(LogRotationConfig(paths: [], rotate: 1, createMode: 0o640, createOwner: "nobody", createGroup: "nogroup"))
        try t.expectSame()
        var a = stat()
        var b = stat()
        stat(t.lr + "/app.log", &a)
        stat(t.g + "/app.log", &b)
        #expect(b.st_mode & 0o7777 == 0o640)
        #expect(a.st_mode == b.st_mode)
        #expect(a.st_uid == b.st_uid && a.st_gid == b.st_gid)
        #expect(b.st_uid == Accounts.uid("nobody"))
    }

    @Test func sizeAndNotifemptyCriteriaMatchLogrotate() throws {
        let t = try Twin()
        t.each { dir in
            DiskKit.write(dir + "/small.log", String(repeating: "s", count: 99))
            DiskKit.write(dir + "/exact.log", String(repeating: "e", count: 100))
            DiskKit.write(dir + "/big.log", String(repeating: "b", count: 150))
            DiskKit.write(dir + "/empty.log", "")
        }
        try t.logrotate("rotate 1\nsize 100\nnotifempty\ncreate", pattern: "*.log", force: false)
        _ = t.guardian(LogRotationConfig(paths: [], rotate: 1, size: 100, notIfEmpty: true), pattern: "*.log", force: false)
        try t.expectSame()
        #expect(DiskKit.names(t.g).contains("exact.log.1"))
        #expect(!DiskKit.names(t.g).contains("small.log.1"))
        #expect(!DiskKit.names(t.g).contains("empty.log.1"))
    }

    @Test func noCriteriaMeansOneMebibyteLikeLogrotate() throws {
        let t = try Twin()
        t.each { dir in
            DiskKit.write(dir + "/under.log", String(repeating: "u", count: 1024 * 1024 - 1))
            DiskKit.write(dir + "/at.log", String(repeating: "a", count: 1024 * 1024))
        }
        try t.logrotate("rotate 1\ncreate", pattern: "*.log", force: false)
        _ = t.guardian(LogRotationConfig(paths: [], rotate: 1), pattern: "*.log", force: false)
        try t.expectSame()
        #expect(DiskKit.names(t.g) == ["at.log", "at.log.1", "under.log"])
    }

    @Test func dailyWithMinsizeAndStateMatchesLogrotate() throws {
        let t = try Twin()
        t.each { dir in
            DiskKit.write(dir + "/small.log", String(repeating: "s", count: 100))
            DiskKit.write(dir + "/big.log", String(repeating: "b", count: 1000))
            DiskKit.write(dir + "/new.log", String(repeating: "n", count: 1000))
        }
        // Both tools last rotated small and big in 2020; new.log is seen for the first time.
        DiskKit.write(t.root + "/logrotate.state", """
            logrotate state -- version 2
            "\(t.lr)/small.log" 2020-1-1-0:0:0
            "\(t.lr)/big.log" 2020-1-1-0:0:0

            """, mode: 0o600)
        var state = RotationState()
        let old = Date(timeIntervalSince1970: 1_577_836_800)  // 2020-01-01
        state.logs[t.g + "/small.log"] = .init(old)
        state.logs[t.g + "/big.log"] = .init(old)
        try state.save(to: t.guardianState)

        try t.logrotate("rotate 1\ndaily\nminsize 500\ncreate", pattern: "*.log", force: false)
        _ = t.guardian(LogRotationConfig(paths: [], rotate: 1, minSize: 500, frequency: .daily), pattern: "*.log", force: false)
        try t.expectSame()
        #expect(DiskKit.names(t.g) == ["big.log", "big.log.1", "new.log", "small.log"])
        // The first sight of new.log was recorded, the rotation of big.log too.
        let saved = try RotationState.load(from: t.guardianState)
        #expect(saved.logs[t.g + "/new.log"] != nil)
        #expect(try #require(saved.logs[t.g + "/big.log"]).date > old)
        #expect(try #require(saved.logs[t.g + "/small.log"]).date == old)
    }

    @Test func maxsizeOverridesTheScheduleLikeLogrotate() throws {
        let t = try Twin()
        t.each { dir in
            DiskKit.write(dir + "/over.log", String(repeating: "o", count: 201))
            DiskKit.write(dir + "/at.log", String(repeating: "a", count: 200))
        }
        try t.logrotate("rotate 1\ndaily\nmaxsize 200\ncreate", pattern: "*.log", force: false)
        _ = t.guardian(LogRotationConfig(paths: [], rotate: 1, maxSize: 200, frequency: .daily), pattern: "*.log", force: false)
        try t.expectSame()
        #expect(DiskKit.names(t.g) == ["at.log", "over.log", "over.log.1"])
    }

    @Test func maxageMatchesLogrotate() throws {
        let t = try Twin()
        t.each { dir in
            DiskKit.write(dir + "/app.log", "live\n")
            for (i, days) in [(1, 1.0), (2, 10.0), (3, 20.0)] {
                DiskKit.write(dir + "/app.log.\(i)", "archive \(i)\n")
                DiskKit.setMTime(dir + "/app.log.\(i)", daysAgo: days)
            }
        }
        try t.logrotate("rotate 5\nmaxage 5\ncreate")
        _ = t.guardian(LogRotationConfig(paths: [], rotate: 5, maxAge: .seconds(5 * 86400)))
        try t.expectSame()
        #expect(DiskKit.names(t.g) == ["app.log", "app.log.1", "app.log.2"])
        #expect(try DiskKit.content(t.g + "/app.log.2") == "archive 1\n")
    }

    @Test func dateextPrunesLikeLogrotate() throws {
        let t = try Twin()
        t.each { dir in
            DiskKit.write(dir + "/app.log", "live\n")
            for day in ["20200101", "20200102", "20200103"] { DiskKit.write(dir + "/app.log-\(day)", "from \(day)\n") }
        }
        try t.logrotate("rotate 2\ndateext\ncreate")
        _ = t.guardian(LogRotationConfig(paths: [], rotate: 2, dateExt: true))
        try t.expectSame()
        let today = LogRotator.dateStamp(Date(), format: "-%Y%m%d")
        #expect(DiskKit.names(t.g) == ["app.log", "app.log-20200103", "app.log\(today)"])

        // A second rotation the same day is refused by both; nothing is lost.
        t.writeRound(2)
        let second = try t.logrotate("rotate 2\ndateext\ncreate")
        #expect(!second.succeeded)
        let rotator = t.guardian(LogRotationConfig(paths: [], rotate: 2, dateExt: true))
        #expect(rotator.events.contains { $0.event == .logRotationFailed })
        try t.expectSame()
    }

    @Test func dateextCompressDelaycompressMatchesLogrotate() throws {
        let t = try Twin()
        try t.each { dir in
            DiskKit.write(dir + "/app.log", "live\n")
            DiskKit.write(dir + "/app.log-20200101", "first\n")
            let fd = open(dir + "/app.log-20200101", O_RDONLY)
            let out = open(dir + "/app.log-20200101.gz", O_WRONLY | O_CREAT, 0o644)
            _ = try Subprocess.runBlocking(["gzip", "-c"], stdin: fd, stdout: out, timeout: .seconds(10))
            close(fd)
            close(out)
            unlink(dir + "/app.log-20200101")
            DiskKit.write(dir + "/app.log-20200102", "second\n")
        }
        try t.logrotate("rotate 2\ndateext\ncompress\ndelaycompress\ncreate")
        _ = t.guardian(LogRotationConfig(paths: [], rotate: 2, compress: true, delayCompress: true, dateExt: true))
        try t.expectSame()
        #expect(DiskKit.names(t.g).contains("app.log-20200102.gz"))
    }

    // MARK: - Issue 15: differences from logrotate that lost data

    @Test func dateextDelaycompressBesideOldNumberedArchivesMatchesLogrotate() throws {
        let t = try Twin()
        try t.each { dir in
            DiskKit.write(dir + "/app.log", "live\n")
            DiskKit.write(dir + "/app.log.1", "numbered one\n")
            DiskKit.write(dir + "/app.log.3", "numbered three\n")
            _ = try DiskKit.run(["gzip", dir + "/app.log.3"])
            DiskKit.write(dir + "/app.log-20200101", "first\n")
            DiskKit.write(dir + "/app.log-20200102", "second\n")
            DiskKit.setMTime(dir + "/app.log.1", daysAgo: 900)
            DiskKit.setMTime(dir + "/app.log.3.gz", daysAgo: 1000)
            DiskKit.setMTime(dir + "/app.log-20200101", daysAgo: 30)
            DiskKit.setMTime(dir + "/app.log-20200102", daysAgo: 29)
        }
        try t.logrotate("rotate 2\ndateext\ncompress\ndelaycompress\ncreate")
        let rotator = t.guardian(LogRotationConfig(paths: [], rotate: 2, compress: true, delayCompress: true, dateExt: true))
        try t.expectSame()
        let today = LogRotator.dateStamp(Date(), format: "-%Y%m%d")
        // The newest dated archive stays plain (delaycompress); the old numbered ones are left alone.
        #expect(DiskKit.names(t.g) == ["app.log", "app.log-20200102.gz", "app.log\(today)", "app.log.1", "app.log.3.gz"])

        // Under disk pressure the oldest archive by age goes first, and the newest is never offered.
        var st = stat()
        stat(t.g + "/app.log", &st)
        let offered = rotator.emergencyArchives(device: UInt64(st.st_dev)).map(\.name)
        #expect(offered == ["app.log.3.gz", "app.log.1", "app.log-20200102.gz"])
    }

    @Test func failingPostrotateKeepsTheOldestAndCompressesNothingLikeLogrotate() throws {
        let t = try Twin()
        try t.each { dir in
            DiskKit.write(dir + "/app.log", "live\n")
            for (n, text) in [(1, "one\n"), (2, "two\n")] {
                DiskKit.write(dir + "/app.log.\(n)", text)
                _ = try DiskKit.run(["gzip", dir + "/app.log.\(n)"])
            }
        }
        let lr = try t.logrotate("rotate 2\ncompress\ncreate\nsharedscripts\npostrotate\n  exit 1\nendscript")
        #expect(!lr.succeeded)
        let rotator = t.guardian(LogRotationConfig(paths: [], rotate: 2, compress: true, postRotate: ["false"]))
        #expect(rotator.events.contains { $0.event == .postRotateFailed })
        try t.expectSame()
        #expect(DiskKit.names(t.g) == ["app.log", "app.log.1", "app.log.2.gz", "app.log.3.gz"])

        // Once the script works again, the next rotation catches up and keeps rotate 2.
        t.writeRound(2)
        let ok = t.guardian(LogRotationConfig(paths: [], rotate: 2, compress: true, postRotate: ["true"]))
        #expect(!ok.events.contains { $0.level >= .error })
        #expect(DiskKit.names(t.g) == ["app.log", "app.log.1.gz", "app.log.2.gz"])
        #expect(try DiskKit.content(t.g + "/app.log.2.gz") == "live\n")
    }

    @Test func failingPostrotateWithDateextKeepsTheOldestLikeLogrotate() throws {
        let t = try Twin()
        try t.each { dir in
            DiskKit.write(dir + "/app.log", "live\n")
            for day in ["20200101", "20200102"] {
                DiskKit.write(dir + "/app.log-\(day)", "from \(day)\n")
                _ = try DiskKit.run(["gzip", dir + "/app.log-\(day)"])
            }
        }
        #expect(!(try t.logrotate("rotate 2\ndateext\ncompress\ncreate\nsharedscripts\npostrotate\n  exit 1\nendscript")).succeeded)
        _ = t.guardian(LogRotationConfig(paths: [], rotate: 2, compress: true, dateExt: true, postRotate: ["false"]))
        try t.expectSame()
        let today = LogRotator.dateStamp(Date(), format: "-%Y%m%d")
        #expect(DiskKit.names(t.g) == ["app.log", "app.log-20200101.gz", "app.log-20200102.gz", "app.log\(today)"])
    }

    @Test func aStrayFileUnderTheGzNameIsMovedAsideLikeLogrotate() throws {
        let t = try Twin()
        t.each { dir in
            DiskKit.write(dir + "/app.log", "live\n")
            DiskKit.write(dir + "/app.log.1", "plain one\n")
            DiskKit.write(dir + "/app.log.1.gz", "stray, not gzip\n")
        }
        let directives = "rotate 3\ncompress\ndelaycompress\ncreate"
        let rule = LogRotationConfig(paths: [], rotate: 3, compress: true, delayCompress: true)
        try t.logrotate(directives)
        let rotator = t.guardian(rule)
        #expect(!rotator.events.contains { $0.level >= .error })
        let moved = try #require(rotator.events.first { $0.event == .archiveMovedAside })
        #expect(moved.metadata["gzip"] == "false")
        // Both keep every line: the stray aside as a .backup, the archives complete.
        for dir in [t.lr, t.g] {
            let names = DiskKit.names(dir)
            let backups = names.filter { $0.hasSuffix(".backup") }
            #expect(backups.count == 1)
            if let b = backups.first { #expect(try DiskKit.content(dir + "/" + b) == "stray, not gzip\n") }
            #expect(names.filter { !$0.hasSuffix(".backup") } == ["app.log", "app.log.1", "app.log.2.gz"])
            #expect(try DiskKit.content(dir + "/app.log.2.gz") == "plain one\n")
        }
        // And the next pass goes on as usual (it used to fail on every run).
        t.writeRound(2)
        let next = t.guardian(rule)
        #expect(!next.events.contains { $0.level >= .error })
        #expect(DiskKit.names(t.g).filter { !$0.hasSuffix(".backup") } == ["app.log", "app.log.1", "app.log.2.gz", "app.log.3.gz"])
    }

    @Test func hardLinkedLogsAreSkippedLikeLogrotate() throws {
        let t = try Twin()
        t.each { dir in
            DiskKit.write(dir + "/app.log", "live\n")
            link(dir + "/app.log", dir + "/other.log")
        }
        let lr = try t.logrotate("rotate 2\ncopytruncate")
        #expect(lr.succeeded)
        let rotator = t.guardian(LogRotationConfig(paths: [], rotate: 2, copyTruncate: true))
        #expect(rotator.events.contains { $0.event == .logRotationSkipped })
        try t.expectSame()
        #expect(try DiskKit.content(t.g + "/other.log") == "live\n")

        // allowhardlink: rotated by both.
        try t.logrotate("rotate 2\ncopytruncate\nallowhardlink")
        var allowed = LogRotationConfig(paths: [], rotate: 2, copyTruncate: true)
        allowed.allowHardLink = true
        _ = t.guardian(allowed)
        try t.expectSame()
        #expect(DiskKit.names(t.g) == ["app.log", "app.log.1", "other.log"])
    }

    @Test func logsInAWritableDirectoryAreRefusedLikeLogrotate() throws {
        let t = try Twin()
        t.each { dir in
            DiskKit.write(dir + "/app.log", "live\n")
            chmod(dir, 0o777)
        }
        let lr = try t.logrotate("rotate 2\ncreate")
        #expect(!lr.succeeded)
        let rotator = t.guardian(LogRotationConfig(paths: [], rotate: 2))
        let refused = try #require(rotator.events.first { $0.event == .diskPathRefused })
        #expect(refused.metadata["reason"]?.contains("world-writable") == true)
        try t.expectSame()
        #expect(DiskKit.names(t.g) == ["app.log"])

        // Group-writable by a group other than root: refused too; by root: rotated.
        t.each { chmod($0, 0o775); chown($0, 0, 1) }
        #expect(!(try t.logrotate("rotate 2\ncreate")).succeeded)
        _ = t.guardian(LogRotationConfig(paths: [], rotate: 2))
        #expect(DiskKit.names(t.g) == ["app.log"])
        t.each { chown($0, 0, 0) }
        #expect(try t.logrotate("rotate 2\ncreate").succeeded)
        _ = t.guardian(LogRotationConfig(paths: [], rotate: 2))
        try t.expectSame()
        #expect(DiskKit.names(t.g) == ["app.log", "app.log.1"])

        // `su root root` opts in, for both.
        t.each { chmod($0, 0o777) }
        #expect(try t.logrotate("rotate 2\ncreate\nsu root root").succeeded)
        var su = LogRotationConfig(paths: [], rotate: 2)
        su.suRoot = true
        let opted = t.guardian(su)
        #expect(!opted.events.contains { $0.level >= .error })
        try t.expectSame()
        #expect(DiskKit.names(t.g) == ["app.log", "app.log.1", "app.log.2"])
    }

    @Test func copytruncateKeepsTheHolesOfASparseLogLikeLogrotate() throws {
        let t = try Twin()
        t.each { dir in
            DiskKit.write(dir + "/app.log", "head\n")
            truncate(dir + "/app.log", 10 << 20)
            DiskKit.append(dir + "/app.log", "tail\n")
        }
        try t.logrotate("rotate 2\ncopytruncate")
        _ = t.guardian(LogRotationConfig(paths: [], rotate: 2, copyTruncate: true))
        try t.expectSame()
        for dir in [t.lr, t.g] {
            var st = stat()
            stat(dir + "/app.log.1", &st)
            #expect(st.st_size == (10 << 20) + 5)
            #expect(st.allocatedBytes < 1 << 20, "\(dir): \(st.allocatedBytes) bytes allocated")
        }
    }

    @Test func aclsAreKeptOnTheNewLogAndTheArchivesLikeLogrotate() throws {
        func acl(_ path: String) throws -> String {
            let r = try DiskKit.run(["getfacl", "-c", path])
            return String(decoding: r.stdout, as: UTF8.self)
        }
        for (directives, rule) in [
            ("rotate 2\ncompress\ncreate", LogRotationConfig(paths: [], rotate: 2, compress: true)),
            ("rotate 2\ncopytruncate", LogRotationConfig(paths: [], rotate: 2, copyTruncate: true)),
            ("rotate 2\ncompress\ncopytruncate", LogRotationConfig(paths: [], rotate: 2, compress: true, copyTruncate: true)),
        ] {
            let t = try Twin()
            for dir in [t.lr, t.g] {
                DiskKit.write(dir + "/app.log", "live\n", mode: 0o600)
                // A log shipper may read; the group may not (the mask shows as group bits).
                let set = try DiskKit.run(["setfacl", "-m", "u:nobody:r--", dir + "/app.log"])
                #expect(set.succeeded)
            }
            try t.logrotate(directives)
            _ = t.guardian(rule)
            try t.expectSame()
            for name in DiskKit.names(t.g) {
                let text = try acl(t.g + "/" + name)
                let expected = try acl(t.lr + "/" + name)
                #expect(text == expected, "\(directives): \(name)")
                #expect(text.contains("user:nobody:r--") && text.contains("group::---"), "\(directives): \(name): \(text)")
            }
        }
    }

    // MARK: - Schedules and state

    /// A moment in local time, whatever the machine's time zone.
    private static func local(_ y: Int32, _ mo: Int32, _ d: Int32, _ h: Int32) -> Date {
        var parts = tm()
        parts.tm_year = y - 1900
        parts.tm_mon = mo - 1
        parts.tm_mday = d
        parts.tm_hour = h
        parts.tm_isdst = -1
        return Date(timeIntervalSince1970: Double(mktime(&parts)))
    }

    @Test func frequenciesFollowLogrotatesCalendar() {
        let wed = Self.local(2026, 11, 25, 8)  // a Wednesday
        #expect(!LogRotator.isDue(.hourly, last: wed, now: wed.addingTimeInterval(600)))
        #expect(LogRotator.isDue(.hourly, last: wed, now: Self.local(2026, 11, 25, 9)))
        #expect(!LogRotator.isDue(.daily, last: wed, now: Self.local(2026, 11, 25, 23)))
        #expect(LogRotator.isDue(.daily, last: wed, now: Self.local(2026, 11, 26, 0)))
        // weekly: 7 days, or a Sunday after at least a day.
        #expect(!LogRotator.isDue(.weekly, last: Self.local(2026, 11, 19, 8), now: wed))
        #expect(LogRotator.isDue(.weekly, last: Self.local(2026, 11, 17, 8), now: wed))
        #expect(LogRotator.isDue(.weekly, last: wed, now: Self.local(2026, 11, 29, 1)))
        #expect(!LogRotator.isDue(.monthly, last: Self.local(2026, 11, 1, 0), now: wed))
        #expect(LogRotator.isDue(.monthly, last: Self.local(2026, 10, 31, 23), now: wed))
    }

    @Test func dailyStateSurvivesARestart() throws {
        let dir = try DiskKit.tempDir("state")
        defer { DiskKit.remove(dir) }
        DiskKit.write(dir + "/app.log", "line\n")
        let rule = LogRotationConfig(paths: [dir + "/app.log"], rotate: 2, frequency: .daily)
        let state = dir + "/state/disk-rotation.json"
        let start = Date()
        DiskKit.rotator([rule], state: state, now: { start }).runScheduled()
        #expect(DiskKit.names(dir) == ["app.log", "state"], "first sight: not rotated")
        // Another process (a restart), later the same hour: still not.
        DiskKit.rotator([rule], state: state, now: { start.addingTimeInterval(60) }).runScheduled()
        #expect(!DiskKit.names(dir).contains("app.log.1"))
        // A day later: rotated, because the first sight was remembered on disk.
        DiskKit.rotator([rule], state: state, now: { start.addingTimeInterval(86400 + 60) }).runScheduled()
        #expect(DiskKit.names(dir).contains("app.log.1"))
        let saved = try RotationState.load(from: state)
        #expect(try #require(saved.logs[dir + "/app.log"]).date.timeIntervalSince(start) > 86400)
    }

    @Test func corruptStateIsKeptAsideAndReported() throws {
        let dir = try DiskKit.tempDir("state")
        defer { DiskKit.remove(dir) }
        DiskKit.write(dir + "/app.log", "line\n")
        DiskKit.write(dir + "/disk-rotation.json", "{not json")
        let rotator = DiskKit.rotator([LogRotationConfig(paths: [dir + "/app.log"], rotate: 1, frequency: .daily)], state: dir + "/disk-rotation.json")
        rotator.runScheduled()
        #expect(rotator.events.contains { $0.event == .rotationStateFailed })
        #expect(FileManager.default.fileExists(atPath: dir + "/disk-rotation.json.bad"))
        #expect(try RotationState.load(from: dir + "/disk-rotation.json").logs[dir + "/app.log"] != nil)
    }

    // MARK: - Bad input and refusals

    @Test func globMatchingNothingWarnsUnlessMissingok() throws {
        let dir = try DiskKit.tempDir("glob")
        defer { DiskKit.remove(dir) }
        let warned = DiskKit.rotator([LogRotationConfig(paths: [dir + "/*.log"], rotate: 1)], state: nil)
        warned.runScheduled(force: true)
        #expect(warned.events.map(\.event) == [.logGlobNoMatch])
        #expect(warned.events.first?.metadata["pattern"] == dir + "/*.log")
        let quiet = DiskKit.rotator([LogRotationConfig(paths: [dir + "/*.log"], rotate: 1, missingOK: true)], state: nil)
        quiet.runScheduled(force: true)
        #expect(quiet.events.isEmpty)
        #expect(DiskKit.names(dir).isEmpty)
    }

    @Test func symbolicLinksAreNeverFollowed() throws {
        let dir = try DiskKit.tempDir("links")
        defer { DiskKit.remove(dir) }
        mkdir(dir + "/logs", 0o755)
        mkdir(dir + "/outside", 0o755)
        DiskKit.write(dir + "/outside/secret", "precious\n")
        DiskKit.write(dir + "/outside/other", "precious too\n")
        symlink(dir + "/outside/secret", dir + "/logs/app.log")
        DiskKit.write(dir + "/logs/web.log", "web\n")
        // An "archive" that is a link to a file outside.
        symlink(dir + "/outside/other", dir + "/logs/web.log.2")
        let rotator = DiskKit.rotator([LogRotationConfig(paths: [dir + "/logs/*.log"], rotate: 3, compress: true)], state: nil)
        rotator.runScheduled(force: true)
        #expect(rotator.events.contains { $0.event == .diskPathRefused && $0.metadata["path"] == dir + "/logs/app.log" })
        #expect(try String(contentsOfFile: dir + "/outside/secret", encoding: .utf8) == "precious\n")
        #expect(try String(contentsOfFile: dir + "/outside/other", encoding: .utf8) == "precious too\n")
        #expect(DiskKit.names(dir + "/outside") == ["other", "secret"])
        // app.log stayed a link, untouched; web.log rotated; the link archive was neither compressed nor followed.
        var st = stat()
        #expect(lstat(dir + "/logs/app.log", &st) == 0 && st.isSymlink)
        #expect(DiskKit.names(dir + "/logs").contains("web.log.1.gz"))
        #expect(lstat(dir + "/logs/web.log.2", &st) == 0 && st.isSymlink)
    }

    /// README: symlinks are never followed. A wildcard component matched
    /// a symbolic link to a directory outside and glob(3) went through it.
    @Test func wildcardDirectoriesThatAreLinksAreNeverFollowed() throws {
        let dir = try DiskKit.tempDir("dirlinks")
        defer { DiskKit.remove(dir) }
        for d in ["/srv", "/srv/real", "/srv/real/logs", "/outside", "/outside/logs"] { mkdir(dir + d, 0o755) }
        DiskKit.write(dir + "/srv/real/logs/app.log", "mine\n")
        DiskKit.write(dir + "/outside/logs/app.log", "precious\n")
        symlink(dir + "/outside", dir + "/srv/link")
        let rotator = DiskKit.rotator([LogRotationConfig(paths: [dir + "/srv/*/logs/*.log"], rotate: 3)], state: nil)
        rotator.runScheduled(force: true)
        #expect(DiskKit.names(dir + "/outside/logs") == ["app.log"])
        #expect(try String(contentsOfFile: dir + "/outside/logs/app.log", encoding: .utf8) == "precious\n")
        #expect(DiskKit.names(dir + "/srv/real/logs").contains("app.log.1"))
        #expect(rotator.events.contains { $0.event == .diskPathRefused && $0.metadata["path"] == dir + "/srv/link/logs/app.log" })
    }

    @Test func databaseFilesAreNeverRotated() throws {
        let dir = try DiskKit.tempDir("protect")
        defer { DiskKit.remove(dir) }
        let db = dir + "/app.db"
        let conn = try SQLiteConnection(path: db, mode: .readWriteCreate)
        try conn.execute("PRAGMA journal_mode=WAL; CREATE TABLE t(x); INSERT INTO t VALUES (1);")
        DiskKit.write(dir + "/app.log", "log\n")
        let before = DiskKit.names(dir)
        #expect(before.contains("app.db-wal") && before.contains("app.db-shm"))
        let rotator = DiskKit.rotator([LogRotationConfig(paths: [dir + "/*"], rotate: 1, compress: true)], state: nil, protected: [db])
        rotator.runScheduled(force: true)
        let after = DiskKit.names(dir)
        #expect(after == (before + ["app.log.1.gz"]).sorted())
        let refused = Set(rotator.events.filter { $0.event == .diskPathRefused }.compactMap { $0.metadata["path"] })
        #expect(refused == [db, db + "-wal", db + "-shm"])
        #expect(try conn.scalar("SELECT count(*) FROM t")?.int64 == 1)
        // The configuration check says so before anything runs.
        let problems = DiskConfig(logs: [LogRotationConfig(paths: [dir + "/*"])]).problems(protectedPaths: [db])
        #expect(problems.contains { $0.isError && $0.message.contains("matches the database file") })
    }

    @Test func unwritableDirectoryFailsClearlyAndDeletesNothing() throws {
        let fs = try DiskKit.Tmpfs(size: "2m")
        defer { fs.unmount() }
        for name in ["app.log", "app.log.1", "app.log.2", "app.log.3"] { DiskKit.write(fs.path + "/" + name, "\(name)\n") }
        let before = DiskKit.names(fs.path)
        try fs.remount(readOnly: true)
        defer { try? fs.remount(readOnly: false) }
        let rotator = DiskKit.rotator([LogRotationConfig(paths: [fs.path + "/app.log"], rotate: 2, compress: true)], state: nil)
        rotator.runScheduled(force: true)
        let failure = try #require(rotator.events.first { $0.event == .logRotationFailed })
        #expect(failure.metadata["error"]?.contains("Read-only file system") == true)
        #expect(failure.metadata["log"] == fs.path + "/app.log")
        #expect(DiskKit.names(fs.path) == before)
        #expect(try DiskKit.content(fs.path + "/app.log.3") == "app.log.3\n")
    }

    @Test func dryRunChangesNothing() throws {
        let dir = try DiskKit.tempDir("dry")
        defer { DiskKit.remove(dir) }
        DiskKit.write(dir + "/app.log", "live\n")
        DiskKit.write(dir + "/app.log.1", "one\n")
        DiskKit.write(dir + "/app.log.2", "two\n")
        let config = DiskConfig(logs: [LogRotationConfig(paths: [dir + "/app.log"], rotate: 2, compress: true)])
        let result = try RotationRunner.runOnce(config: config, protectedPaths: [], stateDir: dir + "/state", dryRun: true, force: true)
        #expect(DiskKit.names(dir) == ["app.log", "app.log.1", "app.log.2"])
        #expect(try DiskKit.content(dir + "/app.log") == "live\n")
        let lines = result.actions.map(\.description)
        #expect(lines.contains("would delete \(dir)/app.log.2 (rotate 2)"))
        #expect(lines.contains("would rotate \(dir)/app.log -> \(dir)/app.log.1"))
        #expect(lines.contains { $0.hasPrefix("would compress") })
        #expect(result.actions.allSatisfy { $0.dryRun })
        // And for real: the same plan happens.
        let real = try RotationRunner.runOnce(config: config, protectedPaths: [], stateDir: dir + "/state", dryRun: false, force: true)
        // The same file: shifted to app.log.3 first, deleted once postrotate (none here) succeeded.
        #expect(real.actions.contains { $0.description == "deleted \(dir)/app.log.3 (rotate 2)" })
        // (Unlike logrotate, which would shift only .gz names and overwrite
        // the plain app.log.1, guardian shifts both and compresses the plain one.)
        #expect(DiskKit.names(dir) == ["app.log", "app.log.1.gz", "app.log.2.gz", "state"])
        #expect(try DiskKit.content(dir + "/app.log.2.gz") == "one\n")
        #expect(try DiskKit.content(dir + "/app.log.1.gz") == "live\n")
    }

    @Test func postrotateRunsWithoutAShellAndWithATimeout() throws {
        let dir = try DiskKit.tempDir("post")
        defer { DiskKit.remove(dir) }
        DiskKit.write(dir + "/a.log", "a\n")
        DiskKit.write(dir + "/b.log", "b\n")
        // A shell would make this two commands and two files ("marker 0", "injected").
        let literal = dir + "/marker $(id -u); touch injected"
        let rule = LogRotationConfig(paths: [dir + "/*.log"], rotate: 1, postRotate: ["touch", literal])
        let rotator = DiskKit.rotator([rule], state: nil)
        rotator.runScheduled(force: true)
        #expect(DiskKit.names(dir) == ["a.log", "a.log.1", "b.log", "b.log.1", "marker $(id -u); touch injected"])
        #expect(rotator.events.filter { $0.event == .logRotated }.count == 2)

        DiskKit.write(dir + "/a.log", "again\n")
        let slow = LogRotationConfig(paths: [dir + "/a.log"], rotate: 1, postRotate: ["sleep", "30"], postRotateTimeout: .milliseconds(300))
        let started = ContinuousClock.now
        let timed = DiskKit.rotator([slow], state: nil)
        timed.runScheduled(force: true)
        #expect(ContinuousClock.now - started < .seconds(5))
        let failed = try #require(timed.events.first { $0.event == .postRotateFailed })
        #expect(failed.metadata["error"]?.contains("timed out") == true)
        #expect(DiskKit.names(dir).contains("a.log.1"))
    }

    @Test func openFilesAreFoundThroughProc() throws {
        let dir = try DiskKit.tempDir("open")
        defer { DiskKit.remove(dir) }
        DiskKit.write(dir + "/held.log", "x\n")
        var st = stat()
        stat(dir + "/held.log", &st)
        #expect(OpenFileCheck.check(st.fileID) == .closed)
        let fd = open(dir + "/held.log", O_WRONLY | O_APPEND)
        #expect(OpenFileCheck.check(st.fileID) == .open)
        // An archive still held by its writer is not compressed, but kept for later.
        rename(dir + "/held.log", dir + "/held.log.1")
        DiskKit.write(dir + "/held.log", "new\n")
        let rotator = DiskKit.rotator([LogRotationConfig(paths: [dir + "/held.log"], rotate: 2, compress: true)], state: nil)
        rotator.compressForPressure(device: UInt64(st.st_dev))
        #expect(rotator.events.map(\.event) == [.logCompressPostponed])
        #expect(rotator.pendingCompress == [dir + "/held.log"])
        DiskKit.append(dir + "/held.log.1", "")
        _ = write(fd, "last words\n", 11)
        close(fd)
        #expect(OpenFileCheck.check(st.fileID) == .closed)
        rotator.retryPending()
        #expect(rotator.pendingCompress.isEmpty)
        #expect(try DiskKit.content(dir + "/held.log.1.gz") == "x\nlast words\n")
    }

    @Test func archivesOfAMatchAreNotRotatedThemselves() throws {
        let dir = try DiskKit.tempDir("star")
        defer { DiskKit.remove(dir) }
        DiskKit.write(dir + "/app.log", "live\n")
        DiskKit.write(dir + "/app.log.1", "old\n")
        DiskKit.rotator([LogRotationConfig(paths: [dir + "/*"], rotate: 3)], state: nil).runScheduled(force: true)
        #expect(DiskKit.names(dir) == ["app.log", "app.log.1", "app.log.2"])
    }
}
