import Foundation
import Testing
@testable import Platform
@testable import Remediate
@testable import Replication

/// Files guardian writes in directories someone else can write to (or could
/// have made first): links planted there are never followed, and a
/// directory another user made is never used. Real links, real users.
@Suite(.serialized) struct FileSafetyTests {
    static func makeVictim(_ path: String) {
        _ = FileManager.default.createFile(atPath: path, contents: Data("victim".utf8))
        chmod(path, 0o600)
    }

    static func content(_ path: String) -> String {
        (try? String(contentsOfFile: path, encoding: .utf8)) ?? "<unreadable>"
    }

    @Test func stagingFilesNeverFollowAPlantedLink() throws {
        let dir = try TestSupport.makeTempDir("sink-link")
        defer { TestSupport.cleanup(dir) }
        let victim = dir + "/victim"
        Self.makeVictim(victim)
        let staged = dir + "/snapshot-0000000000000001.ltx"
        #expect(symlink(victim, staged) == 0)
        let sink = try LTXFileSink(path: staged)
        try [UInt8](repeating: 7, count: 100).withUnsafeBytes { try sink.write($0) }
        try sink.close(sync: false)
        #expect(Self.content(victim) == "victim")
        var st = stat()
        #expect(lstat(staged, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG && st.st_size == 100)
        #expect(st.st_mode & 0o777 == 0o600, "a staging file can hold the whole database: owner only")
    }

    @Test func durableWritesNeverFollowAPlantedTempLink() throws {
        let dir = try TestSupport.makeTempDir("durable-link")
        defer { TestSupport.cleanup(dir) }
        let victim = dir + "/victim"
        Self.makeVictim(victim)
        #expect(symlink(victim, dir + "/state.json.tmp") == 0)
        try DurableFile.write(Array("new".utf8), to: dir + "/state.json")
        #expect(Self.content(victim) == "victim")
        #expect(Self.content(dir + "/state.json") == "new")
    }

    /// A renewal that only changes time stamps' digits is written in place
    /// (same inode, nothing else touched); anything else — another length,
    /// other bytes than digits, content that is not what was read, a link —
    /// is refused and left to the durable replace.
    @Test func renewalsOverwriteInPlaceOnlyWhatDiffersInDigits() throws {
        let dir = try TestSupport.makeTempDir("durable-inplace")
        defer { TestSupport.cleanup(dir) }
        let path = dir + "/marker"
        let old = Array(#"{"renewed":"2026-12-04T14:25:21.123Z","pid":41}"#.utf8)
        let new = Array(#"{"renewed":"2026-12-04T14:25:52.607Z","pid":41}"#.utf8)
        #expect(DurableFile.differOnlyInDigits(old, new))
        #expect(!DurableFile.differOnlyInDigits(old, Array(#"{"renewed":"2026-12-04T14:25:52.607Z","pid":4}"#.utf8)))
        #expect(!DurableFile.differOnlyInDigits(old, Array(#"{"renewed":"2026-12-04T14:25:52.607Z","pid":"1"}"#.utf8)))
        try DurableFile.write(old, to: path)
        var st = stat()
        #expect(lstat(path, &st) == 0)
        let inode = st.st_ino
        #expect(try DurableFile.overwriteInPlace(new, at: path, expected: old))
        #expect(Self.content(path) == String(decoding: new, as: UTF8.self))
        #expect(lstat(path, &st) == 0 && st.st_ino == inode, "the same inode")
        // Not what was read (someone rewrote it meanwhile): untouched.
        #expect(try !DurableFile.overwriteInPlace(old, at: path, expected: old))
        #expect(Self.content(path) == String(decoding: new, as: UTF8.self))
        // A link at the path is not written through.
        let victim = dir + "/victim"
        Self.makeVictim(victim)
        unlink(path)
        #expect(symlink(victim, path) == 0)
        #expect(try !DurableFile.overwriteInPlace(Array("victim".utf8), at: path, expected: Array("victim".utf8)))
        unlink(path)
        #expect(link(victim, path) == 0)
        #expect(try !DurableFile.overwriteInPlace(Array("victix".utf8), at: path, expected: Array("victim".utf8)))
        #expect(Self.content(victim) == "victim")
    }

    /// A lease renewal replaces the marker whole, recycling inodes (the
    /// old marker's is the next spare: none allocated after the first), and
    /// never writes through a link planted as its spare.
    @Test func renewalsReplaceWholeReuseInodesAndNeverFollowAPlantedSpare() throws {
        let dir = try TestSupport.makeTempDir("durable-reuse")
        defer { TestSupport.cleanup(dir) }
        let path = dir + "/marker", spare = dir + "/.marker.spare", held = dir + "/.marker.held"
        func inode(_ p: String) -> ino_t {
            var st = stat()
            return lstat(p, &st) == 0 ? st.st_ino : 0
        }
        try DurableFile.write(Array("first, longer than the rest".utf8), to: path)
        let first = inode(path)
        try DurableFile.replaceReusingInode(Array("second".utf8), at: path, spare: spare, held: held)
        #expect(Self.content(path) == "second", "the old content's tail is cut")
        #expect(inode(spare) == first, "the old marker's inode is the next spare")
        let second = inode(path)
        try DurableFile.replaceReusingInode(Array("third".utf8), at: path, spare: spare, held: held)
        #expect(Self.content(path) == "third")
        #expect(inode(path) == first && inode(spare) == second, "two inodes, taking turns")
        #expect(inode(held) == 0)

        let victim = dir + "/victim"
        Self.makeVictim(victim)
        unlink(spare)
        #expect(symlink(victim, spare) == 0)
        try DurableFile.replaceReusingInode(Array("fourth".utf8), at: path, spare: spare, held: held)
        #expect(Self.content(victim) == "victim")
        #expect(Self.content(path) == "fourth")
        // A hard link planted as the spare is not written through either.
        unlink(spare)
        #expect(link(victim, spare) == 0)
        try DurableFile.replaceReusingInode(Array("fifth".utf8), at: path, spare: spare, held: held)
        #expect(Self.content(victim) == "victim")
        #expect(Self.content(path) == "fifth")
        // A marker that vanished is not made up again.
        unlink(path)
        #expect(throws: SystemError.self) { try DurableFile.replaceReusingInode(Array("sixth".utf8), at: path, spare: spare, held: held) }
        #expect(inode(path) == 0)
    }

    @Test(.enabled(if: geteuid() == 0))
    func aPrivateDirectoryAnotherUserMadeIsRefused() throws {
        let dir = try TestSupport.makeTempDir("private-dir")
        defer { TestSupport.cleanup(dir) }
        // Made by someone else first.
        let theirs = dir + "/theirs"
        mkdir(theirs, 0o777)
        chmod(theirs, 0o777)
        chown(theirs, 65534, 65534)
        #expect(throws: SystemError.self) { try DurableFile.makePrivateDirectory(theirs) }
        // A link to a directory.
        mkdir(dir + "/elsewhere", 0o700)
        #expect(symlink(dir + "/elsewhere", dir + "/link") == 0)
        #expect(throws: SystemError.self) { try DurableFile.makePrivateDirectory(dir + "/link") }
        // World-writable, even if ours.
        mkdir(dir + "/open", 0o700)
        chmod(dir + "/open", 0o777)
        #expect(throws: SystemError.self) { try DurableFile.makePrivateDirectory(dir + "/open") }
        // New: made 0700 and accepted; accepted again.
        try DurableFile.makePrivateDirectory(dir + "/a/b/mine")
        try DurableFile.makePrivateDirectory(dir + "/a/b/mine")
        var st = stat()
        #expect(lstat(dir + "/a/b/mine", &st) == 0 && st.st_mode & 0o777 == 0o700)
    }

    /// The quarantine root lives in the application's directory: a link
    /// planted at its name must not take the database files elsewhere.
    @Test func aQuarantineRootThatIsALinkIsRefusedAndNothingMoves() throws {
        let dir = try TestSupport.makeTempDir("q-link")
        defer { TestSupport.cleanup(dir) }
        let db = dir + "/app.db"
        try Data("db".utf8).write(to: URL(fileURLWithPath: db))
        mkdir(dir + "/elsewhere", 0o755)
        #expect(symlink(dir + "/elsewhere", dir + "/guardian-quarantine") == 0)
        let target = Quarantine.directory(for: db, base: nil, incident: 1, at: Date())
        #expect(throws: SystemError.self) { try Quarantine.move(database: db, into: target, note: "n") }
        #expect(Self.content(db) == "db")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/elsewhere").isEmpty)
        // A real directory works, and the incident's folder is private.
        unlink(dir + "/guardian-quarantine")
        let moved = try Quarantine.move(database: db, into: target, note: "n")
        #expect(moved.count == 1)
        var st = stat()
        #expect(lstat(target, &st) == 0 && st.st_mode & 0o777 == 0o700)
    }

    /// The restored copy is swapped in by descriptor: a link planted at its
    /// name is not chowned/chmodded nor renamed over the database.
    @Test(.enabled(if: geteuid() == 0))
    func swapNeverFollowsALinkAtTheRestoredName() throws {
        let dir = try TestSupport.makeTempDir("swap-link")
        defer { TestSupport.cleanup(dir) }
        let victim = dir + "/victim"
        Self.makeVictim(victim)
        let db = dir + "/app.db"
        let restored = Quarantine.restorePath(for: db, incident: 1, attempt: 0)
        #expect(symlink(victim, restored) == 0)
        let own = FileOwnership(uid: 65534, gid: 65534, mode: 0o100644)
        #expect(throws: SystemError.self) { _ = try Quarantine.swap(restored: restored, into: db, ownership: own, quarantineDir: dir + "/q") }
        var st = stat()
        #expect(stat(victim, &st) == 0 && st.st_uid == 0 && st.st_mode & 0o777 == 0o600)
        #expect(lstat(db, &st) != 0, "nothing renamed into place")
    }

    /// `guardian restore` and remediation write `OUT.tmp` beside the output.
    @Test func restoreTempFilesNeverFollowAPlantedLink() throws {
        let dir = try TestSupport.makeTempDir("restore-link")
        defer { TestSupport.cleanup(dir) }
        let victim = dir + "/victim"
        Self.makeVictim(victim)
        #expect(symlink(victim, dir + "/out.db.tmp") == 0)
        let writer = try RestoreWriter(path: dir + "/out.db.tmp")
        writer.close()
        #expect(Self.content(victim) == "victim")
        var st = stat()
        #expect(lstat(dir + "/out.db.tmp", &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG)
    }
}
