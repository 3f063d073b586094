import Foundation
import Platform
import Replication
import Testing

/// The restore planner on its own: which files, in which order, and the
/// errors for chains that cannot be restored (ltx.md §4.1).
@Suite struct RestorePlannerTests {
    static let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    /// `L<level> <min>-<max>` created `at` seconds after t0.
    static func f(_ level: Int, _ min: UInt64, _ max: UInt64, at seconds: Double? = nil) -> LTXFileInfo {
        LTXFileInfo(level: level, minTXID: min, maxTXID: max, size: 100, createdAt: t0.addingTimeInterval(seconds ?? Double(max)))
    }

    static func names(_ plan: RestorePlan) -> [String] { plan.files.map { "L\($0.level) \($0.minTXID)-\($0.maxTXID)" } }

    static func error(_ body: () throws -> Void) -> RestoreError? {
        do {
            try body()
            Issue.record("no error")
            return nil
        } catch let e as RestoreError {
            return e
        } catch {
            Issue.record("expected a RestoreError, got \(error)")
            return nil
        }
    }

    @Test func walksL0FromTheFirstFullImage() throws {
        let files = (1...5).map { Self.f(0, $0, $0) }
        let plan = try RestorePlanner.plan(files: files)
        #expect(Self.names(plan) == ["L0 1-1", "L0 2-2", "L0 3-3", "L0 4-4", "L0 5-5"])
        #expect(plan.txid == 5 && plan.timestamp == Self.t0.addingTimeInterval(5))
    }

    @Test func startsFromTheNewestSnapshotAndPrefersTheLongestStep() throws {
        var files = (1...9).map { Self.f(0, $0, $0) }
        files += [Self.f(9, 1, 1), Self.f(9, 1, 4), Self.f(1, 2, 5), Self.f(1, 5, 8), Self.f(2, 5, 8)]
        let plan = try RestorePlanner.plan(files: files)
        // L9 1-4, then 5-8 (same range at L1 and L2: the higher level wins), then L0 9.
        #expect(Self.names(plan) == ["L9 1-4", "L2 5-8", "L0 9-9"])
        #expect(plan.txid == 9)
    }

    @Test func tieBreaksLowerMinThenOlder() throws {
        let files = [Self.f(0, 1, 1), Self.f(1, 2, 6), Self.f(1, 1, 6, at: 10), Self.f(3, 2, 6, at: 3), Self.f(3, 2, 6, at: 2)]
        // From 1-1: files ending at 6 are L1 2-6, L1 1-6 (lower min), L3 2-6 twice. Lower min wins.
        let plan = try RestorePlanner.plan(files: files)
        #expect(Self.names(plan) == ["L1 1-6"])
        let without = files.filter { !($0.level == 1 && $0.minTXID == 1) }
        let p2 = try RestorePlanner.plan(files: without)
        #expect(Self.names(p2) == ["L0 1-1", "L3 2-6"])
        #expect(p2.files.last?.createdAt == Self.t0.addingTimeInterval(2), "the older of two equal files")
    }

    @Test func txidTargetStopsExactlyAndAvoidsOvershootingFiles() throws {
        var files = (1...8).map { Self.f(0, $0, $0) }
        files += [Self.f(9, 1, 6), Self.f(1, 1, 4), Self.f(1, 5, 8)]
        #expect(Self.names(try RestorePlanner.plan(files: files, txid: 6)) == ["L9 1-6"])
        #expect(Self.names(try RestorePlanner.plan(files: files, txid: 5)) == ["L1 1-4", "L0 5-5"])
        #expect(Self.names(try RestorePlanner.plan(files: files, txid: 7)) == ["L9 1-6", "L0 7-7"])
        #expect(try RestorePlanner.plan(files: files, txid: 8).txid == 8)
    }

    @Test func timestampTargetIsInclusive() throws {
        let files = (1...6).map { Self.f(0, $0, $0) } + [Self.f(1, 1, 4, at: 4)]
        let at3 = try RestorePlanner.plan(files: files, timestamp: Self.t0.addingTimeInterval(3))
        #expect(at3.txid == 3 && Self.names(at3) == ["L0 1-1", "L0 2-2", "L0 3-3"])
        let before3 = try RestorePlanner.plan(files: files, timestamp: Self.t0.addingTimeInterval(2.999))
        #expect(before3.txid == 2)
        let at4 = try RestorePlanner.plan(files: files, timestamp: Self.t0.addingTimeInterval(4))
        #expect(Self.names(at4) == ["L1 1-4"])
        let future = try RestorePlanner.plan(files: files, timestamp: Self.t0.addingTimeInterval(1e6))
        #expect(future.txid == 6)
    }

    @Test func compactedFilesCountOnlyWhenTheirNewestTransactionQualifies() throws {
        // L0 2-4 are gone (retention); L1 2-4 was written at 4 s.
        let files = [Self.f(0, 1, 1), Self.f(1, 2, 4), Self.f(0, 5, 5)]
        let plan = try RestorePlanner.plan(files: files, timestamp: Self.t0.addingTimeInterval(3.5))
        #expect(plan.txid == 1)
        let e = Self.error { _ = try RestorePlanner.plan(files: files, txid: 3) }
        #expect(e?.kind == .txidUnreachable)
        #expect(e?.description.contains("L1/0000000000000002-0000000000000004.ltx") == true, "\(String(describing: e))")
    }

    @Test func errorsNameTheProblem() throws {
        #expect(Self.error { _ = try RestorePlanner.plan(files: []) }?.kind == .noFiles)

        let gap = Self.error { _ = try RestorePlanner.plan(files: [1, 2, 3, 4, 7, 8].map { Self.f(0, $0, $0) }) }
        #expect(gap?.kind == .gap)
        #expect(gap?.description == "non-contiguous chain: TXIDs 0000000000000005-0000000000000006 are missing between "
            + "L0/0000000000000004-0000000000000004.ltx and L0/0000000000000007-0000000000000007.ltx")
        // A TXID past the gap is unreachable for the same reason.
        let past = Self.error { _ = try RestorePlanner.plan(files: [1, 2, 3, 4, 7, 8].map { Self.f(0, $0, $0) }, txid: 8) }
        #expect(past?.kind == .gap && past?.description.contains("0000000000000005-0000000000000006") == true)
        // Before the gap everything is fine.
        #expect(try RestorePlanner.plan(files: [1, 2, 3, 4, 7, 8].map { Self.f(0, $0, $0) }, txid: 3).txid == 3)

        let noSnapshot = Self.error { _ = try RestorePlanner.plan(files: [5, 6].map { Self.f(0, $0, $0) }) }
        #expect(noSnapshot?.kind == .noSnapshot)
        #expect(noSnapshot?.description.contains("L0/0000000000000005-0000000000000005.ltx") == true)

        let early = Self.error {
            _ = try RestorePlanner.plan(files: [1, 2].map { Self.f(0, $0, $0) }, timestamp: Self.t0.addingTimeInterval(0.5))
        }
        #expect(early?.kind == .timestampTooEarly)
        #expect(early?.description.contains("earliest restore point \(Timestamps.iso8601(Self.t0.addingTimeInterval(1)))") == true)

        let beyond = Self.error { _ = try RestorePlanner.plan(files: [1, 2].map { Self.f(0, $0, $0) }, txid: 9) }
        #expect(beyond?.kind == .txidUnreachable)
        #expect(beyond?.description.contains("newest transaction is TXID 0000000000000002") == true)

        // The only full image is a snapshot past the target.
        let onlySnapshot = Self.error { _ = try RestorePlanner.plan(files: [Self.f(9, 1, 5), Self.f(0, 6, 6)], txid: 3) }
        #expect(onlySnapshot?.kind == .txidUnreachable && onlySnapshot?.description.contains("earliest restore point") == true)
        #expect(Self.error { _ = try RestorePlanner.plan(files: [Self.f(0, 1, 1)], txid: 0) }?.kind == .invalidOptions)
    }
}
