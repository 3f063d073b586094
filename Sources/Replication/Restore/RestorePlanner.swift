import Foundation
import Platform

/// Which files rebuild the database at a target: the newest level-9
/// snapshot at or before the target, then, repeatedly, the file (any level)
/// that extends the contiguous TXID range furthest without passing the target.
/// guardian cuts one L0 file per committed transaction stamped with the time
/// it observed the commit, so a `timestamp` target restores exactly the
/// transactions observed committed at or before that instant wherever L0
/// files still exist; compacted levels are used only when their newest
/// transaction is at or before the target.
public struct RestorePlan: Sendable {
    public var files: [LTXFileInfo]
    public var txid: UInt64
    public var pageSize: UInt32?
}

public struct RestoreError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ d: String) { description = d }
}

public enum RestorePlanner {
    public static func plan(files all: [LTXFileInfo], txid target: UInt64? = nil, timestamp: Date? = nil) throws -> RestorePlan {
        guard !all.isEmpty else { throw RestoreError("no restore points: the replica holds no LTX files") }
        func eligible(_ f: LTXFileInfo) -> Bool {
            if let target, f.maxTXID > target { return false }
            if let timestamp, f.createdAt > timestamp { return false }
            return true
        }
        if let timestamp, let earliest = all.map(\.createdAt).min(), timestamp < earliest {
            throw RestoreError("timestamp \(Timestamps.iso8601(timestamp)) is before the earliest restore point \(Timestamps.iso8601(earliest))")
        }
        // A base: the newest snapshot (L9, or any file starting at TXID 1) allowed by the target.
        let bases = all.filter { $0.minTXID == 1 && eligible($0) }
        guard let base = bases.max(by: { ($0.maxTXID, $0.level) < ($1.maxTXID, $1.level) }) else {
            if let target { throw RestoreError("no snapshot at or before TXID \(LTXNaming.hex(target))") }
            if timestamp != nil { throw RestoreError("no snapshot at or before the timestamp") }
            throw RestoreError("the replica has no snapshot (no file starts at TXID 0000000000000001); it may belong to a chain whose start was deleted")
        }
        var plan = [base]
        var current = base.maxTXID
        let rest = all.filter { $0.level != LTXNaming.snapshotLevel }
        while target.map({ current < $0 }) ?? true {
            let candidates = rest.filter { $0.minTXID <= current + 1 && $0.maxTXID > current && eligible($0) }
            guard let next = candidates.max(by: { a, b in
                (a.maxTXID, UInt64.max - a.minTXID, a.level) < (b.maxTXID, UInt64.max - b.minTXID, b.level)
            }) else { break }
            plan.append(next)
            current = next.maxTXID
        }
        if let target, current != target {
            throw RestoreError("TXID \(LTXNaming.hex(target)) cannot be reached: the chain ends at \(LTXNaming.hex(current))")
        }
        if target == nil, timestamp == nil {
            // A latest restore must not silently stop at a hole.
            if let later = rest.filter({ $0.minTXID > current + 1 }).min(by: { $0.minTXID < $1.minTXID }) {
                throw RestoreError("non-contiguous replica: TXIDs \(LTXNaming.hex(current + 1))-\(LTXNaming.hex(later.minTXID - 1)) are missing between \(plan.last.map { "\($0)" } ?? "?") and \(later)")
            }
        }
        return RestorePlan(files: plan, txid: current, pageSize: nil)
    }
}
