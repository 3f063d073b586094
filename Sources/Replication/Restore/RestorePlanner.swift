import Foundation
import Platform

/// Why a restore could not be planned or carried out. The description says
/// which file, TXID or point in time is concerned and, where it helps, what
/// to do.
public struct RestoreError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// The replica holds no LTX file.
        case noFiles
        /// No file starts at TXID 1: the chain has no full image to start from.
        case noSnapshot
        /// TXIDs are missing between two files.
        case gap
        /// The timestamp is before the first restore point.
        case timestampTooEarly
        /// The TXID is not on the replica or cannot be restored exactly.
        case txidUnreachable
        /// A file does not belong with the others (page size, TXIDs in its header).
        case mismatch
        /// A page of the database is in no file of the chain.
        case incomplete
        /// The output exists (or has a -wal file) and `force` is off.
        case outputExists
        /// The restored copy fails PRAGMA integrity_check / quick_check.
        case integrity
        case invalidOptions
    }

    public let kind: Kind
    public let description: String

    public init(_ kind: Kind, _ description: String) {
        self.kind = kind
        self.description = description
    }
}

/// The files that rebuild the database at the target, oldest first.
public struct RestorePlan: Sendable, Equatable {
    /// Starts with a file holding TXID 1 (a snapshot), then files that each
    /// extend the TXID range without a gap.
    public var files: [LTXFileInfo]
    /// The TXID the restored database will be at.
    public var txid: UInt64
    /// When that transaction was recorded (the last file's `createdAt`).
    public var timestamp: Date?

    public init(files: [LTXFileInfo], txid: UInt64, timestamp: Date?) {
        self.files = files
        self.txid = txid
        self.timestamp = timestamp
    }
}

/// Chooses the files of a restore, as Litestream 0.5.17 does (ltx.md §4.1):
/// the newest level-9 snapshot that fits the target, then repeatedly the file
/// of levels 0–8 that extends the contiguous TXID range furthest (ties: the
/// lower MinTXID, then the higher level, then the older file).
///
/// Point in time: a file fits a `timestamp` target when its `createdAt` is at
/// or before that instant (Litestream uses strictly-before for snapshots;
/// guardian uses at-or-before everywhere). guardian writes one L0 file per
/// committed transaction stamped with the commit time it observed, so while
/// L0 files exist the restored database holds exactly the transactions
/// committed at or before the instant. A compacted file carries the time of
/// its newest transaction, so it fits only when all of it is at or before the
/// target. A timestamp after the newest file restores the latest state.
public enum RestorePlanner {
    public static func plan(files: [LTXFileInfo], txid target: UInt64? = nil, timestamp: Date? = nil) throws -> RestorePlan {
        guard !files.isEmpty else {
            throw RestoreError(.noFiles, "no restore points: the replica holds no LTX files")
        }
        if let bad = files.first(where: { $0.maxTXID > LTXNaming.maxTXID }) {
            throw RestoreError(
                .mismatch,
                "\(bad): MaxTXID \(LTXNaming.hex(bad.maxTXID)) is out of range (no transaction can follow it); move the file out of the replica")
        }
        if let target, target == 0 {
            throw RestoreError(.invalidOptions, "TXID 0000000000000000 is not a restore point (TXIDs start at 0000000000000001)")
        }
        func fits(_ f: LTXFileInfo) -> Bool {
            if let target, f.maxTXID > target { return false }
            if let timestamp, f.createdAt > timestamp { return false }
            return true
        }
        let starts = files.filter { $0.minTXID == 1 }
        guard let firstStart = starts.min(by: { ($0.createdAt, $0.maxTXID) < ($1.createdAt, $1.maxTXID) }) else {
            let oldest = files.min { ($0.minTXID, $0.level) < ($1.minTXID, $1.level) }
            throw RestoreError(
                .noSnapshot,
                "no snapshot: no file starts at TXID 0000000000000001 (the oldest is \(oldest.map { "\($0)" } ?? "?")); "
                    + "the replica is incomplete or holds the tail of another database's history")
        }
        if let timestamp, timestamp < firstStart.createdAt {
            throw RestoreError(
                .timestampTooEarly,
                "timestamp \(Timestamps.iso8601(timestamp)) is before the earliest restore point \(Timestamps.iso8601(firstStart.createdAt)) (\(firstStart))")
        }

        let snapshot = files.filter { $0.level == LTXNaming.snapshotLevel && $0.minTXID == 1 && fits($0) }
            .max { ($0.maxTXID, $1.createdAt) < ($1.maxTXID, $0.createdAt) }
        var chain: [LTXFileInfo] = snapshot.map { [$0] } ?? []
        var current: UInt64 = snapshot?.maxTXID ?? 0
        let others = files.filter { (0..<LTXNaming.snapshotLevel).contains($0.level) }
        while target.map({ current < $0 }) ?? true {
            let candidates = others.filter { $0.minTXID <= current + 1 && $0.maxTXID > current && fits($0) }
            guard let best = candidates.min(by: isBetter) else { break }
            chain.append(best)
            current = best.maxTXID
        }

        guard let last = chain.last else {
            // Something starts at TXID 1, but nothing fitting the target does.
            let earliest = starts.min { $0.maxTXID < $1.maxTXID }
            if let target, let earliest {
                throw RestoreError(
                    .txidUnreachable,
                    "TXID \(LTXNaming.hex(target)) cannot be reached: it is before the earliest restore point, TXID \(LTXNaming.hex(earliest.maxTXID)) (\(earliest))")
            }
            throw RestoreError(.noSnapshot, "no snapshot fits the requested point")
        }

        // A file that fits the target but lies beyond a hole means TXIDs are missing.
        let stranded = others.filter { fits($0) && $0.minTXID > current + 1 }.min { $0.minTXID < $1.minTXID }
        if let target, current != target {
            let newest = files.map(\.maxTXID).max() ?? 0
            if target > newest {
                throw RestoreError(
                    .txidUnreachable,
                    "TXID \(LTXNaming.hex(target)) cannot be reached: the replica's newest transaction is TXID \(LTXNaming.hex(newest))")
            }
            if let stranded {
                throw gapError(after: last, next: stranded, current: current)
            }
            let covering = files.filter { $0.minTXID <= target && $0.maxTXID > target }.min { $0.maxTXID - $0.minTXID < $1.maxTXID - $1.minTXID }
            let hint = covering.map { "; it lies inside \($0), whose single-transaction files are gone" } ?? ""
            throw RestoreError(
                .txidUnreachable,
                "TXID \(LTXNaming.hex(target)) cannot be reached exactly: the nearest earlier restore point is TXID \(LTXNaming.hex(current))\(hint)")
        }
        if let stranded {
            throw gapError(after: last, next: stranded, current: current)
        }
        return RestorePlan(files: chain, txid: current, timestamp: last.createdAt)
    }

    static func gapError(after last: LTXFileInfo, next: LTXFileInfo, current: UInt64) -> RestoreError {
        RestoreError(
            .gap,
            "non-contiguous chain: TXIDs \(LTXNaming.hex(current + 1))-\(LTXNaming.hex(next.minTXID - 1)) are missing between \(last) and \(next)")
    }

    /// Litestream's preference among files that extend the range: the higher
    /// MaxTXID, then the lower MinTXID, then the higher level, then the older.
    static func isBetter(_ a: LTXFileInfo, _ b: LTXFileInfo) -> Bool {
        if a.maxTXID != b.maxTXID { return a.maxTXID > b.maxTXID }
        if a.minTXID != b.minTXID { return a.minTXID < b.minTXID }
        if a.level != b.level { return a.level > b.level }
        return a.createdAt < b.createdAt
    }
}
