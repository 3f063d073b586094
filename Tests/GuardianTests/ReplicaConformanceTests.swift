import Foundation
import Platform
import Replication
import Testing

/// One conformance suite for every replica backend: the file replica always,
/// S3 against a real moto server and SFTP against a real sshd, both started
/// by the tests on 127.0.0.1. What a backend stores is also checked without
/// the client (file system, boto3) against Litestream 0.5's layout.
@Suite("Replica conformance")
struct ReplicaConformanceTests {
    static let t0 = Date(timeIntervalSince1970: 1_714_979_289.123)  // 2024-05-06T07:08:09.123Z

    @Test("write, list by level in TXID order, read back, layout", arguments: Backend.allCases)
    func writeListRead(_ backend: Backend) async throws {
        try await withReplica(backend) { r in
            let c = r.client
            let files: [(level: Int, min: UInt64, max: UInt64)] = [(0, 3, 5), (0, 1, 1), (0, 2, 2), (0, 0x10, 0x1a), (1, 1, 5), (9, 1, 5)]
            var payloads: [String: [UInt8]] = [:]
            for (i, f) in files.enumerated() {
                let bytes = ltxLikePayload(min: f.min, max: f.max, timestamp: Self.t0 + Double(i), size: 200 + i * 37)
                let info = try await c.writeFile(level: f.level, minTXID: f.min, maxTXID: f.max, contents: .bytes(bytes), createdAt: Self.t0 + Double(i))
                #expect(info.size == Int64(bytes.count))
                #expect(info.level == f.level && info.minTXID == f.min && info.maxTXID == f.max)
                payloads["\(f.level)/\(info.name)"] = bytes
            }
            // Things at a level's location that are not LTX files are ignored.
            let junk = ["README", "0000000000000001-0000000000000001.ltx.tmp", "0000000000000001-000000000000000A.ltx", "1-2.ltx", "0000000000000000-0000000000000001.ltx"]
            for name in junk { try await r.putRaw("\(r.levelDirectory(0))/\(name)", [1, 2, 3]) }

            let l0 = try await c.listFiles(level: 0, exactTimestamps: false)
            #expect(l0.map(\.name) == [
                "0000000000000001-0000000000000001.ltx", "0000000000000002-0000000000000002.ltx",
                "0000000000000003-0000000000000005.ltx", "0000000000000010-000000000000001a.ltx",
            ])
            #expect(l0.allSatisfy { $0.level == 0 })
            for f in l0 { #expect(f.size == Int64(payloads["0/\(f.name)"]?.count ?? -1), "\(f)") }
            #expect(try await c.listFiles(level: 1, exactTimestamps: false).map(\.name) == ["0000000000000001-0000000000000005.ltx"])
            #expect(try await c.listFiles(level: 9, exactTimestamps: false).map(\.name) == ["0000000000000001-0000000000000005.ltx"])
            #expect(try await c.listFiles(level: 2, exactTimestamps: false).isEmpty)

            // Read back three ways.
            let dir = try TestSupport.makeTempDir("download")
            defer { TestSupport.cleanup(dir) }
            for level in [0, 1, 9] {
                for f in try await c.listFiles(level: level, exactTimestamps: false) {
                    let expected = try #require(payloads["\(level)/\(f.name)"])
                    #expect(try await c.readFile(f) == expected, "\(f)")
                    #expect(try await c.readPrefix(f, count: 100) == Array(expected.prefix(100)), "\(f)")
                    #expect(try await c.readPrefix(f, count: 100_000) == expected, "\(f)")
                    let local = dir + "/\(level)-\(f.name)"
                    // An existing, longer local file is truncated.
                    try Data(repeating: 9, count: 200_000).write(to: URL(fileURLWithPath: local))
                    try await c.downloadFile(f, to: local)
                    #expect(FileManager.default.contents(atPath: local).map { [UInt8]($0) } == expected, "\(f)")
                }
            }

            // The layout, seen without the client: Litestream's names at Litestream's places.
            for level in [0, 1, 9] {
                let stored = try await r.inspect(level)
                let expected = Set(payloads.keys.filter { $0.hasPrefix("\(level)/") }.map { String($0.dropFirst(2)) })
                #expect(Set(stored.keys).subtracting(junk) == expected, "level \(level) at \(r.levelDirectory(level))")
                for name in expected { #expect(stored[name]?.size == Int64(payloads["\(level)/\(name)"]?.count ?? -1)) }
            }
        }
    }

    @Test("timestamps: stored as mtime or litestream-timestamp, exact on request", arguments: Backend.allCases)
    func timestamps(_ backend: Backend) async throws {
        try await withReplica(backend) { r in
            let c = r.client
            let times = [Self.t0, Self.t0 + 3600.5, Self.t0 + 86400.007]
            for (i, t) in times.enumerated() {
                let txid = UInt64(i + 1)
                try await c.writeFile(level: 0, minTXID: txid, maxTXID: txid, contents: .bytes(ltxLikePayload(min: txid, max: txid, timestamp: t)), createdAt: t)
            }
            let exact = try await c.listFiles(level: 0, exactTimestamps: true)
            #expect(exact.count == 3)
            for (f, t) in zip(exact, times) {
                #expect(abs(f.createdAt.timeIntervalSince(t)) < 0.001, "\(f): \(f.createdAt) vs \(t)")
            }
            let stored = try await r.inspect(0)
            for (f, t) in zip(exact, times) {
                let s = try #require(stored[f.name])
                switch backend {
                case .file:
                    #expect(abs((s.timestamp ?? .distantPast).timeIntervalSince(t)) < 0.001)
                case .sftp:
                    // SFTP v3 carries whole seconds.
                    #expect(s.timestamp == Date(timeIntervalSince1970: t.timeIntervalSince1970.rounded(.down)))
                case .s3:
                    #expect(s.rawTimestamp == RFC3339.format(t))
                    #expect(abs((s.timestamp ?? .distantPast).timeIntervalSince(t)) < 0.001)
                }
            }
            if backend == .s3 { #expect(stored[exact[0].name]?.rawTimestamp == "2024-05-06T07:08:09.123Z") }
            // Without exactTimestamps: file and sftp still report the mtime; s3 reports LastModified (the upload time).
            let cheap = try await c.listFiles(level: 0, exactTimestamps: false)
            for (f, t) in zip(cheap, times) {
                switch backend {
                case .file: #expect(abs(f.createdAt.timeIntervalSince(t)) < 0.001)
                case .sftp: #expect(f.createdAt == Date(timeIntervalSince1970: t.timeIntervalSince1970.rounded(.down)))
                case .s3: #expect(abs(f.createdAt.timeIntervalSinceNow) < 300, "LastModified \(f.createdAt)")
                }
            }
        }
    }

    @Test("delete some files; deleting missing files is not an error", arguments: Backend.allCases)
    func deleteFiles(_ backend: Backend) async throws {
        try await withReplica(backend) { r in
            let c = r.client
            var infos: [LTXFileInfo] = []
            for txid in UInt64(1)...5 {
                infos.append(try await c.writeFile(level: 0, minTXID: txid, maxTXID: txid, contents: .bytes(ltxLikePayload(min: txid, max: txid, timestamp: Self.t0)), createdAt: Self.t0))
            }
            let ghost = LTXFileInfo(level: 0, minTXID: 99, maxTXID: 99, size: 0, createdAt: Self.t0)
            try await c.deleteFiles([infos[1], infos[3], ghost])
            #expect(try await c.listFiles(level: 0, exactTimestamps: false).map(\.minTXID) == [1, 3, 5])
            try await c.deleteFiles([infos[1]])  // again: already gone
            try await c.deleteFiles([])
            #expect(try await c.listFiles(level: 0, exactTimestamps: false).map(\.minTXID) == [1, 3, 5])
            await #expect(throws: ReplicaError.self) { _ = try await c.readFile(infos[1]) }
            do {
                _ = try await c.readFile(infos[1])
            } catch let e as ReplicaError {
                #expect(e.kind == .notFound, "\(e)")
            }
        }
    }

    @Test("history marker: absent, written whole in the root, replaced, never listed as LTX", arguments: Backend.allCases)
    func historyMarker(_ backend: Backend) async throws {
        try await withReplica(backend) { r in
            let c = r.client
            #expect(try await c.readMarker() == nil)
            let first = Array(#"{"history":"a"}"#.utf8)
            try await c.writeMarker(first)
            #expect(try await c.readMarker() == first)
            #expect(try await r.getRaw(ReplicaHistory.markerName) == first)
            let second = Array(#"{"history":"b"}"#.utf8)
            try await c.writeMarker(second)
            #expect(try await c.readMarker() == second)
            for level in LTXNaming.allLevels { #expect(try await c.listFiles(level: level, exactTimestamps: false).isEmpty) }
        }
    }

    @Test("deleteAll removes every LTX file of every level and nothing else", arguments: Backend.allCases)
    func deleteAll(_ backend: Backend) async throws {
        try await withReplica(backend) { r in
            let c = r.client
            for level in [0, 1, 2, 9] {
                for txid in UInt64(1)...3 {
                    try await c.writeFile(level: level, minTXID: txid, maxTXID: txid, contents: .bytes(ltxLikePayload(min: txid, max: txid, timestamp: Self.t0)), createdAt: Self.t0)
                }
            }
            try await r.putRaw("keep-me.txt", Array("not a replica file".utf8))
            try await c.deleteAll()
            for level in LTXNaming.allLevels {
                #expect(try await c.listFiles(level: level, exactTimestamps: false).isEmpty, "level \(level)")
            }
            for level in [0, 1, 2, 9] {
                #expect(try await r.inspect(level).keys.filter { LTXNaming.parse(fileName: $0) != nil }.isEmpty, "level \(level)")
            }
            // The replica is usable again afterwards.
            try await c.writeFile(level: 0, minTXID: 4, maxTXID: 4, contents: .bytes(ltxLikePayload(min: 4, max: 4, timestamp: Self.t0)), createdAt: Self.t0)
            #expect(try await c.listFiles(level: 0, exactTimestamps: false).map(\.minTXID) == [4])
            // Only LTX files go: other things under the replica's path stay.
            #expect(try await r.getRaw("keep-me.txt") == Array("not a replica file".utf8))
        }
    }

    @Test("large payload from memory and from a file (multipart on S3)", arguments: Backend.allCases)
    func largePayload(_ backend: Backend) async throws {
        try await withReplica(backend, partSize: 5 << 20) { r in
            let c = r.client
            let dir = try TestSupport.makeTempDir("large")
            defer { TestSupport.cleanup(dir) }
            var big = ltxLikePayload(min: 1, max: 40, timestamp: Self.t0, size: (9 << 20) + 12345)
            let fromMemory = try await c.writeFile(level: 9, minTXID: 1, maxTXID: 40, contents: .bytes(big), createdAt: Self.t0)
            #expect(fromMemory.size == Int64(big.count))
            #expect(try await c.readFile(fromMemory) == big)

            big[200] ^= 0xff
            let source = dir + "/snapshot.ltx"
            try Data(big).write(to: URL(fileURLWithPath: source))
            let fromFile = try await c.writeFile(level: 9, minTXID: 1, maxTXID: 41, contents: .file(path: source), createdAt: Self.t0 + 1)
            #expect(fromFile.size == Int64(big.count))
            try await c.downloadFile(fromFile, to: dir + "/back.ltx")
            #expect(FileManager.default.contents(atPath: dir + "/back.ltx").map { [UInt8]($0) } == big)
            #expect(try await c.listFiles(level: 9, exactTimestamps: true).map(\.size) == [Int64(big.count), Int64(big.count)])
            if backend == .s3 {
                // 5 MiB + the rest: S3's multipart ETag is "<md5 of the parts' md5s>-2".
                let stored = try await r.inspect(9)
                #expect(stored.count == 2)
                #expect(stored.values.allSatisfy { $0.etag?.hasSuffix("-2") == true }, "\(stored)")
            }
        }
    }

    @Test("concurrent writes all land", arguments: Backend.allCases)
    func concurrentWrites(_ backend: Backend) async throws {
        try await withReplica(backend) { r in
            let c = r.client
            let payloads = (1...24).map { i in ltxLikePayload(min: UInt64(i), max: UInt64(i), timestamp: Self.t0 + Double(i), size: 500 + i * 101) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (i, bytes) in payloads.enumerated() {
                    group.addTask {
                        let txid = UInt64(i + 1)
                        try await c.writeFile(level: i % 2, minTXID: txid, maxTXID: txid, contents: .bytes(bytes), createdAt: Self.t0 + Double(i + 1))
                    }
                }
                try await group.waitForAll()
            }
            let all = try await c.listFiles(level: 0, exactTimestamps: false) + c.listFiles(level: 1, exactTimestamps: false)
            #expect(all.count == payloads.count)
            for f in all {
                #expect(try await c.readFile(f) == payloads[Int(f.minTXID) - 1], "\(f)")
            }
        }
    }

    @Test("rewriting the same TXID range replaces the file (a retried upload)", arguments: Backend.allCases)
    func rewriteSameRange(_ backend: Backend) async throws {
        try await withReplica(backend) { r in
            let c = r.client
            let first = ltxLikePayload(min: 7, max: 9, timestamp: Self.t0, size: 400)
            let second = ltxLikePayload(min: 7, max: 9, timestamp: Self.t0 + 5, size: 450)
            try await c.writeFile(level: 1, minTXID: 7, maxTXID: 9, contents: .bytes(first), createdAt: Self.t0)
            let info = try await c.writeFile(level: 1, minTXID: 7, maxTXID: 9, contents: .bytes(second), createdAt: Self.t0 + 5)
            #expect(try await c.readFile(info) == second)
            let listed = try await c.listFiles(level: 1, exactTimestamps: true)
            #expect(listed.count == 1)
            #expect(listed.first?.size == 450)
            #expect(abs((listed.first?.createdAt ?? .distantPast).timeIntervalSince(Self.t0 + 5)) < 0.001)
            // Nothing but the final file is left at the level (no temporary files).
            #expect(Array(try await r.inspect(1).keys) == [info.name])
        }
    }

    @Test("a missing file reads as notFound", arguments: Backend.allCases)
    func missingFile(_ backend: Backend) async throws {
        try await withReplica(backend) { r in
            let ghost = LTXFileInfo(level: 0, minTXID: 5, maxTXID: 5, size: 10, createdAt: Self.t0)
            let local = NSTemporaryDirectory() + "ghost-\(UUID().uuidString)"
            for op in ["read", "prefix", "download"] {
                do {
                    switch op {
                    case "read": _ = try await r.client.readFile(ghost)
                    case "prefix": _ = try await r.client.readPrefix(ghost, count: 100)
                    default: try await r.client.downloadFile(ghost, to: local)
                    }
                    Issue.record("\(op) of a missing file succeeded")
                } catch let e as ReplicaError {
                    #expect(e.kind == .notFound, "\(op): \(e)")
                }
            }
            #expect(!FileManager.default.fileExists(atPath: local), "a failed download leaves no file")
        }
    }
}
