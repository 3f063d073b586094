import Foundation
import Platform
@testable import Replication
import Testing

/// A replica with a sync-interval gets the transactions of one interval as
/// one L0 file: the pure grouping, and the merged file's header (TXID span,
/// newest commit and timestamp, the WAL range so a restart can resume).
@Suite struct ShipBatchTests {
    static func l0(_ txid: UInt64, walOffset: Int64, walSize: Int64 = 4120, salt: UInt32 = 7, pages: [UInt32] = [1, 2]) throws -> PendingLTX {
        let h = LTXHeader(pageSize: 4096, commit: 3, minTXID: txid, maxTXID: txid, timestamp: 1_764_000_000_000 + Int64(txid), walOffset: walOffset, walSize: walSize, walSalt1: salt, walSalt2: salt + 1)
        let bytes = try LTXReference.encode(h, pages.map { ($0, LTXReference.page(txid * 10 + UInt64($0))) })
        let info = LTXFileInfo(level: 0, minTXID: txid, maxTXID: txid, size: Int64(bytes.count), createdAt: Date(timeIntervalSince1970: Double(h.timestamp) / 1000))
        return PendingLTX(info: info, payload: .bytes(bytes), observedAt: Date())
    }

    @Test func consecutiveTransactionsBecomeOneFileAndFullImagesGoAlone() throws {
        let a = try Self.l0(5, walOffset: 32)
        let b = try Self.l0(6, walOffset: 32 + 4120)
        let c = try Self.l0(7, walOffset: 32 + 2 * 4120)
        let image = PendingLTX(info: LTXFileInfo(level: 0, minTXID: 1, maxTXID: 8, size: 100, createdAt: Date()), payload: .file(path: "/nonexistent"), observedAt: Date())
        let d = try Self.l0(9, walOffset: 32)
        let groups = ReplicaShipper.batches([a, b, c, image, d], merge: true)
        #expect(groups.map { $0.map(\.info.maxTXID) } == [[5, 6, 7], [8], [9]])
        #expect(ReplicaShipper.batches([a, b, c], merge: false).count == 3)
        // A gap in TXIDs starts a new batch; so does a new WAL generation.
        #expect(ReplicaShipper.batches([a, c], merge: true).count == 2)
        let restarted = try Self.l0(8, walOffset: 32, salt: 9)
        #expect(ReplicaShipper.batches([a, b, c, restarted], merge: true).map { $0.map(\.info.maxTXID) } == [[5, 6, 7], [8]])
    }

    @Test func theMergedFileSpansTheBatchAndItsWALRange() throws {
        let batch = try [Self.l0(5, walOffset: 32), Self.l0(6, walOffset: 32 + 4120, pages: [2, 3]), Self.l0(7, walOffset: 32 + 2 * 4120, pages: [1])]
        let (info, payload) = try ReplicaShipper.merged(batch)
        #expect(info.level == 0 && info.minTXID == 5 && info.maxTXID == 7)
        #expect(info.createdAt == batch[2].info.createdAt)
        guard case .bytes(let bytes) = payload else { Issue.record("not in memory"); return }
        let (h, pages) = try LTXReference.decodeAll(bytes)
        #expect(h.minTXID == 5 && h.maxTXID == 7 && h.commit == 3)
        #expect(h.timestamp == 1_764_000_000_007)
        #expect(h.walOffset == 32 && h.walSize == 3 * 4120 && h.walSalt1 == 7 && h.walSalt2 == 8)
        // Newest version of each page wins.
        #expect(pages.map(\.0) == [1, 2, 3])
        #expect(pages[0].1 == LTXReference.page(71) && pages[1].1 == LTXReference.page(62) && pages[2].1 == LTXReference.page(63))
        #expect(info.size == Int64(bytes.count))

        // Not one contiguous WAL range (a WAL restart inside the batch): no range.
        let restarted = try [Self.l0(5, walOffset: 32), Self.l0(6, walOffset: 32, salt: 9)]
        guard case .bytes(let b2) = try ReplicaShipper.merged(restarted).1 else {
            Issue.record("not in memory")
            return
        }
        let (h2, _) = try LTXReference.decodeAll(b2)
        #expect(h2.walOffset == 0 && h2.walSize == 0 && h2.walSalt1 == 0)
    }
}
