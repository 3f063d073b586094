import Foundation
import Testing
@testable import Platform
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
}
