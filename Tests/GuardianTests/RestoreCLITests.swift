import Foundation
import Platform
import Replication
import Testing

/// `guardian restore` and `guardian ltx`, run as the built binary.
@Suite struct RestoreCLITests {
    static func bytes(_ path: String) -> [UInt8]? { FileManager.default.contents(atPath: path).map { [UInt8]($0) } }

    /// Runs a restore that must fail onto an existing OUT and checks the failure left it alone.
    static func expectFailure(_ args: [String], dir: String, status: Int32 = 1, mentioning needles: [String]) async throws {
        let out = dir + "/precious.db"
        try TestSupport.write("precious", to: out)
        defer { unlink(out) }
        let r = try await guardian(["restore", "--force", "-o", out] + args)
        #expect(r.status == status, "\(args): \(r.stderr)")
        let lines = r.stderr.split(separator: "\n")
        #expect(lines.count == 1 && r.stderr.hasPrefix("guardian: "), "one line expected: \(r.stderr)")
        for needle in needles { #expect(r.stderr.contains(needle), "\(needle) not in: \(r.stderr)") }
        #expect(r.stdout.isEmpty)
        #expect((try? String(contentsOfFile: out, encoding: .utf8)) == "precious")
        #expect(!FileManager.default.fileExists(atPath: out + ".tmp"))
    }

    @Test func restoresLatestTXIDAndTimestampFromAReplicaURL() async throws {
        let dir = try TestSupport.makeTempDir("cli")
        defer { TestSupport.cleanup(dir) }
        let b = try await ChainBuilder.standard(dir)
        let url = "file://" + b.replicaRoot

        let latest = try await guardian(["restore", "-o", dir + "/latest.db", url])
        #expect(latest.status == 0, "\(latest.stderr)")
        #expect(latest.stderr.isEmpty, "no progress bar without a terminal: \(latest.stderr)")
        #expect(latest.stdout.contains("restored \(dir)/latest.db from \(url): TXID 000000000000000c (\(Timestamps.iso8601(b.time(12)))), 12 files"))
        #expect(latest.stdout.contains("full integrity check ok"))
        #expect(Self.bytes(dir + "/latest.db") == b.state(12))

        let byTXID = try await guardian(["restore", "--txid", "0000000000000005", "--integrity-check", "quick", "-o", dir + "/five.db", url])
        #expect(byTXID.status == 0, "\(byTXID.stderr)")
        #expect(Self.bytes(dir + "/five.db") == b.state(5))

        let byTime = try await guardian(["restore", "--timestamp", Timestamps.iso8601(b.time(7)), "--output", dir + "/seven.db", url])
        #expect(byTime.status == 0, "\(byTime.stderr)")
        #expect(Self.bytes(dir + "/seven.db") == b.state(7))

        // The same instant with an offset, 1 ms earlier: TXID 6.
        let earlier = b.time(7).addingTimeInterval(-0.001)
        let offset = Timestamps.iso8601(earlier.addingTimeInterval(2 * 3600)).replacingOccurrences(of: "Z", with: "+02:00")
        let byOffset = try await guardian(["restore", "--timestamp", offset, "-o", dir + "/six.db", url])
        #expect(byOffset.status == 0, "\(byOffset.stderr)")
        #expect(Self.bytes(dir + "/six.db") == b.state(6))
    }

    @Test func failuresAreOneLineAndLeaveOutputAlone() async throws {
        let dir = try TestSupport.makeTempDir("clibad")
        defer { TestSupport.cleanup(dir) }
        let b = try await ChainBuilder.standard(dir)
        let url = "file://" + b.replicaRoot
        let five = b.path(5)
        let saved = try #require(Self.bytes(five))

        // Without --force an existing OUT is refused.
        try TestSupport.write("precious", to: dir + "/out.db")
        let refused = try await guardian(["restore", "-o", dir + "/out.db", url])
        #expect(refused.status == 1)
        #expect(refused.stderr == "guardian: restore from \(url) failed: \(dir)/out.db already exists; pass --force to replace it (its -wal, -shm and -journal files are removed too)\n")
        #expect((try? String(contentsOfFile: dir + "/out.db", encoding: .utf8)) == "precious")

        var flipped = saved
        flipped[100 + 10 + Int(LTXReference.be32(saved, 106)) - 1] ^= 0x08
        try Data(flipped).write(to: URL(fileURLWithPath: five))
        try await Self.expectFailure([url], dir: dir, mentioning: [five, "checksum mismatch", "was not changed"])

        try Data(saved.prefix(200)).write(to: URL(fileURLWithPath: five))
        try await Self.expectFailure([url], dir: dir, mentioning: [five, "truncated"])

        try FileManager.default.removeItem(atPath: five)
        try await Self.expectFailure([url], dir: dir, mentioning: ["TXIDs 0000000000000005-0000000000000005 are missing between"])
        try Data(saved).write(to: URL(fileURLWithPath: five))

        try await Self.expectFailure(["--timestamp", "2001-01-01T00:00:00Z", url], dir: dir, mentioning: ["before the earliest restore point"])
        try await Self.expectFailure(["--txid", "00000000000000ff", url], dir: dir, mentioning: ["cannot be reached"])

        let other = try await ChainBuilder.standard(dir + "/other", pageSize: 1024)
        try FileManager.default.removeItem(atPath: b.path(3))
        try FileManager.default.copyItem(atPath: other.path(3), toPath: b.path(3))
        try await Self.expectFailure([url], dir: dir, mentioning: ["another database"])
    }

    @Test func badArgumentsExitTwo() async throws {
        let dir = try TestSupport.makeTempDir("cliargs")
        defer { TestSupport.cleanup(dir) }
        let url = "file://" + dir + "/replica"
        for (args, needle) in [
            (["--txid", "5", url], "16 hex digits"),
            (["--txid", "000000000000000g", url], "16 hex digits"),
            (["--timestamp", "yesterday", url], "RFC 3339"),
            (["--txid", "0000000000000001", "--timestamp", "2026-01-01T00:00:00Z", url], "not both"),
            (["--integrity-check", "sometimes", url], "full, quick or none"),
            (["--replica", "x", url], "--replica"),
            (["ftp://host/x"], "unsupported replica URL scheme"),
            ([dir + "/app.db", "--config", dir + "/missing.yml"], "missing.yml"),
        ] {
            try await Self.expectFailure(args, dir: dir, status: 2, mentioning: [needle])
        }
    }

    @Test func databasePathUsesTheConfiguredReplicaWithTheNewestTXID() async throws {
        let dir = try TestSupport.makeTempDir("clicfg")
        defer { TestSupport.cleanup(dir) }
        let b = try await ChainBuilder.standard(dir)
        // "short": a replica that only got TXIDs 1-5. "broken": a path that is a file.
        let short = dir + "/short"
        try FileManager.default.createDirectory(atPath: short + "/ltx/0", withIntermediateDirectories: true)
        for t in UInt64(1)...5 { try FileManager.default.copyItem(atPath: b.path(t), toPath: short + "/ltx/0/" + LTXNaming.fileName(minTXID: t, maxTXID: t)) }
        try TestSupport.write("not a directory", to: dir + "/broken")
        let config = dir + "/guardian.yml"
        try TestSupport.write("""
            dbs:
              - path: \(b.db)
                replicas:
                  - name: short
                    url: file://\(short)
                  - name: broken
                    url: file://\(dir)/broken
                  - name: full
                    url: file://\(b.replicaRoot)
            """, to: config)

        let r = try await guardian(["restore", "--config", config, "-o", dir + "/out.db", b.db])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("guardian: warning: replica broken (file://\(dir)/broken) is unreachable, skipped"))
        #expect(r.stdout.contains("from full (file://\(b.replicaRoot)): TXID 000000000000000c"))
        #expect(Self.bytes(dir + "/out.db") == b.state(12))

        let chosen = try await guardian(["restore", "--config", config, "--replica", "short", "-o", dir + "/short.db", b.db])
        #expect(chosen.status == 0, "\(chosen.stderr)")
        #expect(Self.bytes(dir + "/short.db") == b.state(5))

        try await Self.expectFailure(["--config", config, "--replica", "nope", b.db], dir: dir, status: 2, mentioning: ["no replica named nope", "short, broken, full"])
        try await Self.expectFailure(["--config", config, dir + "/other.db"], dir: dir, status: 2, mentioning: ["is not a database of \(config)"])
        try await Self.expectFailure(["--config", config, "--replica", "broken", b.db], dir: dir, status: 1, mentioning: ["broken"])
    }

    @Test func ltxListsRestorePoints() async throws {
        let dir = try TestSupport.makeTempDir("cliltx")
        defer { TestSupport.cleanup(dir) }
        let b = try await ChainBuilder.standard(dir)
        try await b.snapshot(6)
        let url = "file://" + b.replicaRoot
        let table = try await guardian(["ltx", url])
        #expect(table.status == 0, "\(table.stderr)")
        let lines = table.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first == "level  min_txid          max_txid          size        created")
        #expect(lines.count == 14)
        let snapshotSize = try #require(Self.bytes(b.path(level: 9, 1, 6))).count
        #expect(lines.last == "9      0000000000000001  0000000000000006  \(String(snapshotSize).padding(toLength: 12, withPad: " ", startingAt: 0))\(Timestamps.iso8601(b.time(6)))")

        let json = try await guardian(["ltx", "--json", url])
        #expect(json.status == 0)
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]])
        #expect(rows.count == 13)
        #expect(rows.first?["level"] as? Int == 0 && rows.first?["min_txid"] as? String == "0000000000000001")
        #expect(rows.last?["max_txid"] as? String == "0000000000000006" && rows.last?["size"] as? Int == snapshotSize)
        #expect(rows.last?["created"] as? String == Timestamps.iso8601(b.time(6)))
        #expect(rows.allSatisfy { $0["replica"] as? String == url })

        let config = dir + "/guardian.yml"
        try TestSupport.write("dbs:\n  - path: \(b.db)\n    replicas:\n      - name: main\n        url: \(url)\n      - name: gone\n        url: file://\(dir)/guardian.yml\n", to: config)
        let both = try await guardian(["ltx", "--config", config, b.db])
        #expect(both.status == 1)
        #expect(both.stdout.hasPrefix("replica main (\(url))\nlevel  min_txid"))
        #expect(both.stderr.contains("guardian: replica gone"))
    }
}
