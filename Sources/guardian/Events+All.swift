import DiskWatch
import Platform
import Remediate
import Replication

extension GuardianEvent {
    /// Every event any module logs: the journald catalog lists them all.
    static var everyKind: [GuardianEvent] { all + diskWatchEvents + remediateEvents + [replicaRequestRetrying] + metricsEvents + execEvents + directoryEvents }
}
