import Foundation
import Platform
import Replication
import Testing

/// The real Litestream 0.5.17 and guardian's S3/SFTP clients share one
/// layout: Litestream replicates a real SQLite database to moto / sshd,
/// guardian lists and reads what it wrote (names, levels, sizes, exact
/// timestamps), copies every file to a second path with its own writer, and
/// Litestream restores the database from guardian's copy.
@Suite("Replica interop with Litestream")
struct ReplicaInteropTests {
    static var litestream: String { TestSupport.venvBin + "/litestream" }

    @Test("Litestream writes, guardian reads and rewrites, Litestream restores", arguments: [Backend.s3, Backend.sftp])
    func roundTrip(_ backend: Backend) async throws {
        guard FileManager.default.isExecutableFile(atPath: Self.litestream) else {
            throw TestFailure("litestream not found at \(Self.litestream); run scripts/install-deps.sh")
        }
        let dir = try TestSupport.makeTempDir("interop")
        defer { TestSupport.cleanup(dir) }
        let db = dir + "/app.db"
        try await sqlite3(db, "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")

        switch backend {
        case .s3:
            try await SharedPeers.withMoto { moto in
                let bucket = "interop-\(UUID().uuidString.prefix(6).lowercased())"
                try await moto.createBucket(bucket)
                func yaml(_ path: String) -> String {
                    LitestreamReplicaYAML.config(db: db, replica: LitestreamReplicaYAML.s3(moto, bucket: bucket, path: path))
                }
                try await exercise(
                    dir: dir, db: db, sourceConfig: yaml("src"), targetConfig: yaml("dst"),
                    source: S3ReplicaClient(moto.location(bucket: bucket, path: "src"), options: .fastTest()),
                    target: S3ReplicaClient(moto.location(bucket: bucket, path: "dst"), options: .fastTest()))
            }
        case .sftp:
            try await SharedPeers.withSSH { ssh in
                let root = ssh.dataDir + "/interop-\(UUID().uuidString.prefix(6))"
                func yaml(_ path: String) -> String {
                    LitestreamReplicaYAML.config(db: db, replica: LitestreamReplicaYAML.sftp(ssh, path: path))
                }
                try await exercise(
                    dir: dir, db: db, sourceConfig: yaml(root + "/src"), targetConfig: yaml(root + "/dst"),
                    source: SFTPReplicaClient(ssh.location(path: root + "/src"), options: .fastTest()),
                    target: SFTPReplicaClient(ssh.location(path: root + "/dst"), options: .fastTest()))
            }
        case .file:
            Issue.record("not an argument of this test")
        }
    }

    private func exercise(
        dir: String, db: String, sourceConfig: String, targetConfig: String,
        source: any ReplicaClient, target: any ReplicaClient
    ) async throws {
        let src = dir + "/src.yml"
        let dst = dir + "/dst.yml"
        try TestSupport.write(sourceConfig, to: src)
        try TestSupport.write(targetConfig, to: dst)

        // Three one-shot syncs with writes in between: a snapshot and incrementals.
        for round in 0..<3 {
            var sql = "BEGIN;"
            for i in 0..<40 { sql += "INSERT INTO t(v) VALUES('round \(round) row \(i) \(String(repeating: "x", count: 200))');" }
            sql += "COMMIT;"
            try await sqlite3(db, sql)
            let r = try await Self.runLitestream(["replicate", "-config", src, "-once"])
            #expect(r.status == 0, "litestream replicate: \(r.stderr)")
        }
        let expected = try await sqlite3(db, "SELECT count(*), sum(length(v)), max(id) FROM t")

        // guardian reads what Litestream wrote.
        var files: [LTXFileInfo] = []
        for level in LTXNaming.allLevels { files += try await source.listFiles(level: level, exactTimestamps: true) }
        #expect(files.count >= 3, "\(files)")
        let listed = try await litestreamListing(src, db: db)
        #expect(Set(files.map { "\($0.level)/\(LTXNaming.hex($0.minTXID))/\(LTXNaming.hex($0.maxTXID))/\($0.size)" }) == Set(listed))
        for f in files {
            let bytes = try await source.readFile(f)
            #expect(Int64(bytes.count) == f.size)
            #expect(bytes.prefix(4).elementsEqual("LTX1".utf8), "\(f)")
            #expect(Self.be64(bytes, 16) == f.minTXID && Self.be64(bytes, 24) == f.maxTXID, "\(f)")
            // The exact timestamp (metadata on S3, LTX header via SFTP) is the header's Timestamp.
            let headerMillis = Int64(bitPattern: Self.be64(bytes, 32))
            #expect(abs(f.createdAt.timeIntervalSince1970 * 1000 - Double(headerMillis)) < 1.5, "\(f): \(f.createdAt) vs \(headerMillis)")
            // guardian writes a copy in its own way.
            try await target.writeFile(level: f.level, minTXID: f.minTXID, maxTXID: f.maxTXID, contents: .bytes(bytes), createdAt: f.createdAt)
        }

        // Litestream sees guardian's copy as a replica and restores from it.
        #expect(Set(try await litestreamListing(dst, db: db)) == Set(listed))
        let out = dir + "/restored.db"
        let r = try await Self.runLitestream(["restore", "-config", dst, "-o", out, db])
        #expect(r.status == 0, "litestream restore: \(r.stderr)")
        #expect(try await sqlite3(out, "SELECT count(*), sum(length(v)), max(id) FROM t") == expected)
        #expect(try await sqlite3(out, "PRAGMA integrity_check") == "ok")
    }

    /// `level/min/max/size` of every file, as `litestream ltx -level all -json` sees them.
    private func litestreamListing(_ config: String, db: String) async throws -> [String] {
        let r = try await Self.runLitestream(["ltx", "-config", config, "-level", "all", "-json", db])
        // Litestream may log (e.g. "sftp host key not verified") before the JSON document.
        let json = r.stdout.range(of: "\n[").map { String(r.stdout[r.stdout.index(after: $0.lowerBound)...]) } ?? r.stdout
        guard r.status == 0, let rows = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]] else {
            throw TestFailure("litestream ltx: \(r.stdout) \(r.stderr)")
        }
        return rows.map { row in
            "\(row["level"] as? Int ?? -1)/\(row["min_txid"] as? String ?? "")/\(row["max_txid"] as? String ?? "")/\((row["size"] as? NSNumber)?.int64Value ?? -1)"
        }
    }

    /// Litestream refuses to start with AWS_CA_BUNDLE set (ltx.md §5.3), which some CI images export.
    static func runLitestream(_ arguments: [String]) async throws -> RunResult {
        try await run("/usr/bin/env", ["-u", "AWS_CA_BUNDLE", litestream] + arguments)
    }

    static func be64(_ bytes: [UInt8], _ offset: Int) -> UInt64 {
        guard bytes.count >= offset + 8 else { return 0 }
        return bytes[offset..<(offset + 8)].reduce(0) { $0 << 8 | UInt64($1) }
    }
}
