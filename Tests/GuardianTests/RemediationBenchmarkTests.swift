import Foundation
import Platform
import Testing

@testable import Remediate

/// The remediation benchmark (benchmarks/remediate/run.sh): time from
/// corruption to the app serving again on the restored database, split into
/// detection / confirmation / stop / restore / verify / restart, and rows
/// lost per incident. Off unless GUARDIAN_BENCH=1; sizes in MB from
/// GUARDIAN_BENCH_SIZES (default "10,100"). Prints `BENCH|...` lines.
@Suite(.serialized, .enabled(if: ProcessInfo.processInfo.environment["GUARDIAN_BENCH"] == "1", "set GUARDIAN_BENCH=1"))
struct RemediationBenchmarkTests {
    static var sizes: [Int] {
        (ProcessInfo.processInfo.environment["GUARDIAN_BENCH_SIZES"] ?? "10,100").split(separator: ",").compactMap { Int($0) }
    }

    @Test func corruptionToServingAgain() async throws {
        print("BENCH|size|db bytes|detect|confirm|stop app|release|quarantine|restore|verify|swap|restart|once detected|total|rows committed|rows lost|failed requests|restore MB/s")
        for mb in Self.sizes {
            try await run(megabytes: mb)
        }
    }

    func run(megabytes mb: Int) async throws {
        // ~230 bytes per row (200 hex chars + overhead).
        let rows = mb * 1_000_000 / 230
        let made = ContinuousClock.now
        try await withWorld(rows: rows) { w in
            let dbBytes = (try? FileManager.default.attributesOfItem(atPath: w.db)[.size] as? Int64) ?? 0
            print("BENCH-LOG|\(mb) MB database made in \(Units.formatDuration(ContinuousClock.now - made))")
            try await w.startApp()
            try await w.startReplication(timeout: .seconds(Int64(30 + mb)))
            try await Task.sleep(for: .seconds(1))
            var config = w.config()
            config.integrityInterval = .seconds(1)
            config.integrityBudget = .seconds(120)
            config.confirmBudget = .seconds(300)
            config.checkpointInterval = .milliseconds(500)
            config.startTimeout = .seconds(60)
            let (svc, store) = w.service(config: config)
            let task = Task { try await svc.run() }
            // Let the first scheduled checks pass on the healthy database.
            // ... and corrupt at a random moment relative to the check schedule.
            try await Task.sleep(for: .milliseconds(2000 + Int64.random(in: 0..<1000)))
            let corruptedAt = Date()
            try Damage.overwritePages(w.db, count: 8)
            let done = await TestSupport.waitUntil(timeout: .seconds(Int64(120 + mb / 2))) {
                guard let r = try? await store.incidents().first, r.outcome != .open else { return false }
                return true
            }
            // Let the app serve a few requests on the restored database.
            try await Task.sleep(for: .seconds(1))
            task.cancel()
            _ = await task.result
            let incident = try #require(try await store.incidents().first)
            #expect(done && incident.outcome == .resolvedAutomatically, "\(describe(incident))")
            guard incident.outcome == .resolvedAutomatically else { return }

            func span(_ name: String) -> Double {
                incident.steps.filter { $0.step == name }.reduce(0) { $0 + (($1.endedAt ?? $1.at).timeIntervalSince($1.at)) }
            }
            let startStep = try #require(incident.steps.last { $0.step == IncidentStepName.startApp })
            let stopStep = try #require(incident.steps.first { $0.step == IncidentStepName.stopApp })
            let stoppedAt = (stopStep.endedAt ?? stopStep.at).timeIntervalSince1970
            let servingAt = try #require(w.served.first { $0.at >= startStep.at.timeIntervalSince1970 }?.at, "no request served after the restart")
            let detect = incident.detectedAt.timeIntervalSince(corruptedAt)
            let confirm = incident.confirmedAt.timeIntervalSince(incident.detectedAt)
            let restore = span(IncidentStepName.plan) + span(IncidentStepName.restore)
            let verify = span(IncidentStepName.verify)
            let restart = servingAt - startStep.at.timeIntervalSince1970
            let onceDetected = servingAt - incident.detectedAt.timeIntervalSince1970
            let total = servingAt - corruptedAt.timeIntervalSince1970

            // Rows lost: requests the app reported committed before guardian
            // stopped it, missing from the database it serves now.
            // (The app writes the same insert time into the row and its log line.)
            let committed = w.committed.filter { $0.at < stoppedAt }
            let live = try SQLiteConnection(path: w.db, mode: .readOnly)
            let kept = try live.scalar("SELECT count(*) FROM items WHERE at > 0 AND at < ?", [.real(stoppedAt)])?.int64 ?? 0
            let lost = Int64(committed.count) - kept
            let failed = w.failedRequests.filter { $0 < servingAt }.count
            let mbps = Double(incident.restoredBytes ?? 0) / 1e6 / max(0.001, span(IncidentStepName.restore))
            func s(_ v: Double) -> String { String(format: "%.2fs", v) }
            print("BENCH|\(mb) MB|\(dbBytes)|\(s(detect))|\(s(confirm))|\(s(span(IncidentStepName.stopApp)))|\(s(span(IncidentStepName.release)))|\(s(span(IncidentStepName.quarantine)))|\(s(restore))|\(s(verify))|\(s(span(IncidentStepName.swap)))|\(s(restart))|\(s(onceDetected))|\(s(total))|\(committed.count)|\(lost)|\(failed)|\(String(format: "%.0f", mbps))")
            print("BENCH-LOG|\(mb) MB timeline:\n\(describe(incident))")
        }
    }
}
