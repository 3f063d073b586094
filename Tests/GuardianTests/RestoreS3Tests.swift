import Foundation
import Platform
import Replication
import Testing

/// Restores from an S3 replica on a real moto server: the download path of
/// the restore engine, the CLI with an s3:// URL, and the real Litestream
/// reading what guardian's encoder stored in S3.
@Suite struct RestoreS3Tests {
    @Test func restoresFromS3ByLibraryCLIAndLitestream() async throws {
        let dir = try TestSupport.makeTempDir("s3restore")
        defer { TestSupport.cleanup(dir) }
        let b = try await ChainBuilder.standard(dir)
        try await b.snapshot(6)
        try await SharedPeers.withMoto { server in
            let bucket = "restore-\(UUID().uuidString.prefix(8).lowercased())"
            try await server.createBucket(bucket)
            let location = server.location(bucket: bucket, path: "dbs/app")
            let s3 = try S3ReplicaClient(location)
            // Copy guardian's file replica into S3 through the S3 client.
            for file in try await Restorer().listRestorePoints(client: b.client) {
                _ = try await s3.writeFile(
                    level: file.level, minTXID: file.minTXID, maxTXID: file.maxTXID,
                    contents: .file(path: b.client.path(of: file)), createdAt: file.createdAt)
            }

            let latest = try await Restorer().restore(client: s3, to: dir + "/latest.db", options: RestoreOptions())
            #expect(latest.plan.first?.level == 9)
            #expect(FileManager.default.contents(atPath: dir + "/latest.db").map { [UInt8]($0) } == b.state(12))
            // Timestamps come from the litestream-timestamp metadata.
            let seven = try await Restorer().restore(client: s3, to: dir + "/seven.db", options: RestoreOptions(timestamp: b.time(7)))
            #expect(seven.txid == 7)
            #expect(FileManager.default.contents(atPath: dir + "/seven.db").map { [UInt8]($0) } == b.state(7))
            #expect(((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).allSatisfy { !$0.contains(".restore-") })

            let url = "s3://\(bucket)/dbs/app?endpoint=\(server.endpoint)&region=us-east-1"
            let env = ["AWS_ACCESS_KEY_ID": server.accessKeyID, "AWS_SECRET_ACCESS_KEY": server.secretAccessKey]
            let cli = try await guardian(["restore", "--txid", "0000000000000009", "-o", dir + "/cli.db", url], environment: env)
            #expect(cli.status == 0, "\(cli.stderr)")
            #expect(FileManager.default.contents(atPath: dir + "/cli.db").map { [UInt8]($0) } == b.state(9))

            if FileManager.default.isExecutableFile(atPath: RestoreInteropTests.litestream) {
                var lenv = env
                lenv["AWS_CA_BUNDLE"] = ""
                let ls = try await run(RestoreInteropTests.litestream, ["restore", "-o", dir + "/ls.db", url], environment: lenv)
                #expect(ls.status == 0, "\(ls.stderr)")
                #expect(FileManager.default.contents(atPath: dir + "/ls.db").map { [UInt8]($0) } == b.state(12))
            }
        }
    }
}
