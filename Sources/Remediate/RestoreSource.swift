import Foundation
import Platform
import Replication

/// One restore point a remediation may try.
public struct RestoreCandidate: Sendable, Equatable, Codable {
    /// Replica name (`file`, `s3`, ...) and where it is (no secrets).
    public var replica: String
    public var destination: String
    /// The newest transaction the restored copy will hold.
    public var txid: UInt64
    /// Restore the replica's latest state (as opposed to an earlier point).
    public var latest: Bool
    /// When that transaction was committed, if the replica says.
    public var timestamp: Date?

    public init(replica: String, destination: String, txid: UInt64, latest: Bool, timestamp: Date?) {
        self.replica = replica
        self.destination = destination
        self.txid = txid
        self.latest = latest
        self.timestamp = timestamp
    }

    public var label: String {
        "replica \(replica) (\(destination)) at TXID \(LTXNaming.hex(txid))\(latest ? " (latest)" : " (earlier point)")"
    }
}

/// What the planner found: candidates best first, and why replicas were skipped.
public struct CandidatePlan: Sendable, Equatable {
    public var candidates: [RestoreCandidate]
    public var problems: [String]

    public init(candidates: [RestoreCandidate], problems: [String]) {
        self.candidates = candidates
        self.problems = problems
    }
}

/// A restored copy on local disk.
public struct RestoredCopy: Sendable, Equatable {
    public var txid: UInt64
    public var timestamp: Date?
    public var bytes: Int64

    public init(txid: UInt64, timestamp: Date?, bytes: Int64) {
        self.txid = txid
        self.timestamp = timestamp
        self.bytes = bytes
    }
}

/// Where restored copies come from. The production source uses
/// Replication's public restore API over the configured replicas.
public protocol RestoreSource: Sendable {
    /// Restore points, best first: each replica's latest state (highest
    /// position first), then earlier snapshots. At most `maxCandidates`.
    func plan(maxCandidates: Int) async -> CandidatePlan
    /// Restores `candidate` into a new file at `path` (which must not exist).
    func restore(_ candidate: RestoreCandidate, to path: String) async throws -> RestoredCopy
}

/// What one replica holds, as the planner sees it.
public struct ReplicaHoldings: Sendable, Equatable {
    public var name: String
    public var destination: String
    /// Highest TXID over all levels, and when it was written.
    public var position: UInt64
    public var positionTime: Date?
    /// Earlier points, newest first: every snapshot (level 9), the point just
    /// before each snapshot (restorable only without it), and the newest file
    /// of each compaction level (1...8) — the natural checkpoints of the
    /// replica, spaced by the compaction intervals.
    public var earlierPoints: [(txid: UInt64, time: Date)]

    public init(name: String, destination: String, position: UInt64, positionTime: Date?, earlierPoints: [(txid: UInt64, time: Date)]) {
        self.name = name
        self.destination = destination
        self.position = position
        self.positionTime = positionTime
        self.earlierPoints = earlierPoints
    }

    public static func == (a: ReplicaHoldings, b: ReplicaHoldings) -> Bool {
        a.name == b.name && a.destination == b.destination && a.position == b.position && a.positionTime == b.positionTime
            && a.earlierPoints.map(\.txid) == b.earlierPoints.map(\.txid)
    }
}

public enum CandidatePlanner {
    /// Pure: orders candidates from what the replicas hold. First every
    /// replica's latest (highest position first, configuration order on
    /// ties), then earlier points (newest first) — points that skip the
    /// newest files, in case those carry the damage.
    public static func candidates(from holdings: [ReplicaHoldings], max limit: Int) -> [RestoreCandidate] {
        let ordered = holdings.enumerated().sorted { a, b in
            a.element.position != b.element.position ? a.element.position > b.element.position : a.offset < b.offset
        }.map(\.element)
        var out: [RestoreCandidate] = []
        for h in ordered where h.position > 0 {
            out.append(RestoreCandidate(replica: h.name, destination: h.destination, txid: h.position, latest: true, timestamp: h.positionTime))
        }
        var earlier: [RestoreCandidate] = []
        for h in ordered {
            for s in h.earlierPoints where s.txid < h.position {
                earlier.append(RestoreCandidate(replica: h.name, destination: h.destination, txid: s.txid, latest: false, timestamp: s.time))
            }
        }
        earlier.sort { $0.txid > $1.txid }
        var seen: Set<UInt64> = []
        for c in earlier where seen.insert(c.txid).inserted { out.append(c) }
        return Array(out.prefix(max(0, limit)))
    }

    /// Reads what a replica holds through its public client API.
    public static func holdings(of replica: ReplicaConfig, client: any ReplicaClient) async throws -> ReplicaHoldings {
        var position: UInt64 = 0
        var positionTime: Date?
        var points: [UInt64: Date] = [:]
        for level in LTXNaming.allLevels {
            let files = try await client.listFiles(level: level, exactTimestamps: false)
            for f in files where f.maxTXID > position {
                position = f.maxTXID
                positionTime = f.createdAt
            }
            if level == LTXNaming.snapshotLevel {
                for f in files {
                    points[f.maxTXID] = f.createdAt
                    // Just before the snapshot: a restore that cannot use it.
                    // A snapshot is read from the database file, so if the
                    // file was already damaged the snapshot carries the damage;
                    // the lower levels' chain (from the WAL) does not.
                    if f.maxTXID > 1, points[f.maxTXID - 1] == nil { points[f.maxTXID - 1] = f.createdAt }
                }
            } else if level > 0, let newest = files.max(by: { $0.maxTXID < $1.maxTXID }) {
                points[newest.maxTXID] = newest.createdAt
            }
        }
        let earlier = points.map { (txid: $0.key, time: $0.value) }.filter { $0.txid < position }.sorted { $0.txid > $1.txid }
        return ReplicaHoldings(name: replica.name, destination: replica.target.destination, position: position, positionTime: positionTime, earlierPoints: earlier)
    }
}
