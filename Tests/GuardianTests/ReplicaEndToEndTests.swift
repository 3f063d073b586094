import Foundation
import Platform
import Replication
import Testing

/// The built `guardian` binary replicates a real SQLite database to moto
/// (S3) and to sshd (SFTP) given only a replica URL; `guardian ltx` lists
/// the replica, and both `guardian restore` and the real `litestream
/// restore` rebuild a database identical to the source.
@Suite("Replica end to end over S3 and SFTP")
struct ReplicaEndToEndTests {
    @Test("guardian replicate → guardian restore and litestream restore", arguments: [Backend.s3, Backend.sftp])
    func replicateAndRestore(_ backend: Backend) async throws {
        guard FileManager.default.isExecutableFile(atPath: TestSupport.guardianBinary) else {
            throw TestFailure("guardian binary not built at \(TestSupport.guardianBinary)")
        }
        let dir = try TestSupport.makeTempDir("e2e-remote")
        defer { TestSupport.cleanup(dir) }
        switch backend {
        case .s3:
            try await SharedPeers.withMoto { moto in
                let bucket = "e2e-\(UUID().uuidString.prefix(6).lowercased())"
                try await moto.createBucket(bucket)
                let url = "s3://\(bucket)/app?endpoint=\(moto.endpoint)&forcePathStyle=true&region=us-east-1"
                let env = ["AWS_ACCESS_KEY_ID": moto.accessKeyID, "AWS_SECRET_ACCESS_KEY": moto.secretAccessKey]
                try await exercise(
                    dir: dir, url: url, environment: env,
                    litestreamReplica: LitestreamReplicaYAML.s3(moto, bucket: bucket, path: "app"))
            }
        case .sftp:
            try await SharedPeers.withSSH { ssh in
                let path = ssh.dataDir + "/e2e-\(UUID().uuidString.prefix(6))"
                let url = "sftp://\(ssh.user)@\(ssh.host):\(ssh.port)\(path)?key-path=\(ssh.clientKey)&known-hosts=\(ssh.knownHosts)"
                try await exercise(
                    dir: dir, url: url, environment: [:],
                    litestreamReplica: LitestreamReplicaYAML.sftp(ssh, path: path))
            }
        case .file:
            Issue.record("not an argument of this test")
        }
    }

    private func exercise(dir: String, url: String, environment: [String: String], litestreamReplica: String) async throws {
        let db = dir + "/app.db"
        try await sqlite3(db, "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")
        let replicate = try ChildProcess.start(
            TestSupport.guardianBinary, ["replicate", "--state-dir", dir + "/state", db, url],
            environment: environment.merging(["GUARDIAN_LOG_TARGET": "stderr"]) { $1 })
        defer { replicate.removeFiles() }
        for round in 0..<5 {
            var sql = "BEGIN;"
            for i in 0..<30 { sql += "INSERT INTO t(v) VALUES('r\(round) i\(i) \(String(repeating: "y", count: 300))');" }
            sql += "COMMIT;"
            try await sqlite3(db, sql)
            try await Task.sleep(for: .milliseconds(400))
        }
        // A burst of 200 one-row transactions: with the 1 s sync-interval
        // they reach the replica as a few batched L0 files, not 200 uploads.
        var burst = ""
        for i in 0..<200 { burst += "INSERT INTO t(v) VALUES('burst \(i)');" }
        try await sqlite3(db, burst)
        let expected = try await sqlite3(db, "SELECT count(*), sum(length(v)), max(id) FROM t")
        try await Task.sleep(for: .seconds(3))
        replicate.signal(SIGTERM)
        let status = await replicate.wait(timeout: .seconds(40))
        #expect(status == 0, "guardian replicate: \(replicate.stderr.suffix(3000))")

        let ltx = try await guardian(["ltx", "--json", url], environment: environment)
        #expect(ltx.status == 0, "guardian ltx: \(ltx.stderr)")
        #expect(ltx.stdout.contains("min_txid"), "\(ltx.stdout)")
        let files = (try? JSONSerialization.jsonObject(with: Data(ltx.stdout.utf8)) as? [[String: Any]]) ?? []
        let level0 = files.filter { $0["level"] as? Int == 0 }
        #expect(!level0.isEmpty && level0.count < 40, "\(level0.count) L0 files for 205 transactions")

        let out = dir + "/guardian-restored.db"
        let restore = try await guardian(["restore", "-o", out, url], environment: environment)
        #expect(restore.status == 0, "guardian restore: \(restore.stderr)")
        #expect(try await sqlite3(out, "SELECT count(*), sum(length(v)), max(id) FROM t") == expected)

        let config = dir + "/litestream.yml"
        try TestSupport.write(LitestreamReplicaYAML.config(db: db, replica: litestreamReplica), to: config)
        let out2 = dir + "/litestream-restored.db"
        let ls = try await ReplicaInteropTests.runLitestream(["restore", "-config", config, "-o", out2, db])
        #expect(ls.status == 0, "litestream restore: \(ls.stderr)")
        #expect(try await sqlite3(out2, "SELECT count(*), sum(length(v)), max(id) FROM t") == expected)
        #expect(try await sqlite3(out2, "PRAGMA integrity_check") == "ok")
    }
}
