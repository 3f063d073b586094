import Foundation
import Testing
import Platform

/// guardian's LogHandler against the real systemd-journald, run privately in
/// a mount namespace (test-peers.md §3), read back with journalctl.
@Suite struct JournaldTests {
    @Test func entriesCarryStructuredFields() async throws {
        let dir = try TestSupport.makeTempDir("journal")
        defer { TestSupport.cleanup(dir) }
        let db = dir + "/app.db"
        try await sqlite3(db, "PRAGMA journal_mode=wal; CREATE TABLE t(x);")
        try TestSupport.write("status:\n  socket: \(dir)/g.sock\ndbs:\n  - path: \(db)\n    monitor-interval: 100ms\n", to: dir + "/g.yml")
        let script = """
            set -e
            mount -t tmpfs tmpfs /run/systemd/journal
            mount -t tmpfs tmpfs /run/log
            /lib/systemd/systemd-journald >/dev/null 2>&1 & J=$!
            for i in $(seq 100); do [ -S /run/systemd/journal/socket ] && break; sleep 0.05; done
            \(TestSupport.guardianBinary) run --config \(dir)/g.yml --log-target journald & G=$!
            for i in $(seq 100); do [ -S \(dir)/g.sock ] && break; sleep 0.05; done
            sleep 1
            kill -TERM $G; wait $G || true
            journalctl --no-pager -t guardian -o json > \(dir)/out.json
            kill $J; wait $J || true
            """
        try FileManager.default.createDirectory(atPath: "/run/systemd/journal", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: "/run/log", withIntermediateDirectories: true)
        let r = try await run("/usr/bin/unshare", ["--mount", "--propagation", "private", "bash", "-c", script])
        #expect(r.status == 0, "\(r.stderr)")
        let lines = ((try? String(contentsOfFile: dir + "/out.json", encoding: .utf8)) ?? "").split(separator: "\n")
        let entries = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(!entries.isEmpty, "no journal entries; \(r.stderr)")
        for e in entries {
            #expect(e["SYSLOG_IDENTIFIER"] as? String == "guardian")
            #expect((e["MESSAGE_ID"] as? String)?.count == 32, "\(e)")
            #expect(["2", "3", "4", "5", "6", "7"].contains(e["PRIORITY"] as? String ?? ""))
        }
        let opened = entries.first { $0["MESSAGE_ID"] as? String == GuardianEvent.databaseOpened.id }
        #expect(opened?["MESSAGE"] as? String == "database opened")
        #expect(opened?["GUARDIAN_DB"] as? String == db)
        #expect(opened?["GUARDIAN_PAGE_SIZE"] as? String == "4096")
        #expect(opened?["PRIORITY"] as? String == "6")
        #expect(entries.contains { $0["MESSAGE_ID"] as? String == GuardianEvent.daemonReady.id })
        #expect(entries.contains { $0["MESSAGE_ID"] as? String == GuardianEvent.daemonStopping.id })
    }
}
