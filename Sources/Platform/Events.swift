/// Every kind of event guardian logs. Each has a constant MESSAGE text and a
/// stable journald MESSAGE_ID (a 128-bit id, as `journalctl -x` and the
/// message catalog in packaging/ expect). Details travel as metadata, never
/// inside the message. The ids never change once shipped: add new events at
/// the end with a fresh id.
public struct GuardianEvent: Sendable, Hashable {
    public let name: String
    public let id: String
    public let message: String

    public init(name: String, id: String, message: String) {
        self.name = name
        self.id = id
        self.message = message
    }
}

extension GuardianEvent {
    public static let daemonStarted = GuardianEvent(name: "daemonStarted", id: "c52efc063c40ae2b62b609ce02370e3d", message: "guardian started")
    public static let daemonReady = GuardianEvent(name: "daemonReady", id: "c406e6dd0f2519c109b7fa8aed2c86c6", message: "all databases opened; guardian is ready")
    public static let daemonStopping = GuardianEvent(name: "daemonStopping", id: "6140d6457947efaf3a9fdbd03b6975c0", message: "guardian is stopping")
    public static let daemonStopped = GuardianEvent(name: "daemonStopped", id: "3f34ae7c241bd37a7b86200cdb1efc60", message: "guardian stopped")
    public static let configReloaded = GuardianEvent(name: "configReloaded", id: "b65115cbed374fc6c329ecb0871b85db", message: "configuration reloaded")
    public static let configReloadRefused = GuardianEvent(name: "configReloadRefused", id: "f35adf20ab6fe94a1cf11b7df0b4ddb3", message: "new configuration refused; keeping the running one")
    public static let databaseOpened = GuardianEvent(name: "databaseOpened", id: "dc67c3269fb46b3d12570f527d4ae2f5", message: "database opened")
    public static let databaseOpenFailed = GuardianEvent(name: "databaseOpenFailed", id: "b5fb5e7bb81322a77ff7456163d63ac8", message: "database could not be opened")
    public static let statusServerListening = GuardianEvent(name: "statusServerListening", id: "512abf528309d48a6544feeb4ae31498", message: "status socket listening")
    public static let statusServerFailed = GuardianEvent(name: "statusServerFailed", id: "e48f8fdfcd2106315703d9addb20dea0", message: "status socket failed")
    public static let watchdogEnabled = GuardianEvent(name: "watchdogEnabled", id: "9b3a38f8cff4d01917d9e9cc9ae4c079", message: "systemd watchdog enabled")
    public static let replicaSynced = GuardianEvent(name: "replicaSynced", id: "37069169a297c9807650e2792f59e23e", message: "replica synced")
    public static let replicaSyncFailed = GuardianEvent(name: "replicaSyncFailed", id: "65da33fb4830c2b0b508caa42b683f3a", message: "replica sync failed")
    public static let replicaHistoryDiverged = GuardianEvent(name: "replicaHistoryDiverged", id: "2985bf9d31864756bd3f98fe58cc6f4e", message: "a replica holds another history; numbering continues above it with a snapshot")
    public static let databaseReplaced = GuardianEvent(name: "databaseReplaced", id: "cc566e6a78084a518984f75974f13208", message: "the database file was replaced at its path; replication starts a new session with a full image")
    public static let replicaRecovered = GuardianEvent(name: "replicaRecovered", id: "4e6d482553d7a992fba37bb914f950f0", message: "replica recovered after failures")
    public static let snapshotWritten = GuardianEvent(name: "snapshotWritten", id: "268729f3051a40f4ec730d58db267c8b", message: "snapshot written")
    public static let walGapDetected = GuardianEvent(name: "walGapDetected", id: "ca62e7e3bd36182aa8d4402cb393e71d", message: "WAL frames were lost before guardian copied them; taking a snapshot")
    public static let walRestarted = GuardianEvent(name: "walRestarted", id: "9ca3d4b26f9f2a14f5bb89a22eb06397", message: "WAL restarted")
    public static let checkpointDone = GuardianEvent(name: "checkpointDone", id: "a85f04aa827f0c4147e30834390fa038", message: "checkpoint done")
    public static let checkpointFailed = GuardianEvent(name: "checkpointFailed", id: "c1515f8e2051be1a672320a88615feeb", message: "checkpoint failed")
    public static let compactionDone = GuardianEvent(name: "compactionDone", id: "71a667a36ab4e00cb2af52799d70d419", message: "compaction done")
    public static let retentionApplied = GuardianEvent(name: "retentionApplied", id: "18f7e5780193542f3b4c6fadf1687e06", message: "retention removed old files")
    public static let restoreStarted = GuardianEvent(name: "restoreStarted", id: "41f14867c95a2b31a2549b870a49d555", message: "restore started")
    public static let restoreFinished = GuardianEvent(name: "restoreFinished", id: "0aa41d54e99ec5555ad63b563972f079", message: "restore finished")
    public static let restoreFailed = GuardianEvent(name: "restoreFailed", id: "6d3f8aa19538632731ec865c38b9400c", message: "restore failed")
    public static let diskLevelChanged = GuardianEvent(name: "diskLevelChanged", id: "d44fce650b66b29baa8d535eae57c05b", message: "disk usage level changed")
    public static let diskActionTaken = GuardianEvent(name: "diskActionTaken", id: "4a094f7753c957e1e1c94ce4c73f59e0", message: "disk cleanup action taken")
    public static let logRotated = GuardianEvent(name: "logRotated", id: "d95a57a0aa5e1466827f493f3bf01f8e", message: "log file rotated")
    public static let ballastReleased = GuardianEvent(name: "ballastReleased", id: "ac3825bb480b37e9e7d28eb550a6e399", message: "ballast file released")
    public static let ballastRecreated = GuardianEvent(name: "ballastRecreated", id: "d9a9bc4f8f647ee9ee22ae793d266f81", message: "ballast file recreated")
    public static let integrityCheckFailed = GuardianEvent(name: "integrityCheckFailed", id: "d5fb8ab4a6f32beb6aca3906e4ed5ec2", message: "integrity check failed")
    public static let incidentOpened = GuardianEvent(name: "incidentOpened", id: "c38641f78ab0d367e790b88ec4c0d301", message: "incident opened")
    public static let incidentStep = GuardianEvent(name: "incidentStep", id: "8a04e8da290f57f9a3d77ed55d75e9df", message: "incident step")
    public static let incidentResolved = GuardianEvent(name: "incidentResolved", id: "587cfd6508dd95fa9cf2400e3530864d", message: "incident resolved")
    public static let incidentEscalated = GuardianEvent(name: "incidentEscalated", id: "2b2e2a132d37e91d291d743a5f7bb143", message: "incident escalated")
    public static let alertDelivered = GuardianEvent(name: "alertDelivered", id: "db008513a52af272ba41ca4f0de0c79e", message: "alert delivered")
    public static let alertFailed = GuardianEvent(name: "alertFailed", id: "d49637b5ccca683dd3aaa1838744a856", message: "alert delivery failed")
    public static let drillPassed = GuardianEvent(name: "drillPassed", id: "a82b881dab54168b4026b4749f8325d8", message: "recovery drill passed")
    public static let drillFailed = GuardianEvent(name: "drillFailed", id: "ac8cc437c847a52ea7ad68b1c207e760", message: "recovery drill failed")
    public static let internalError = GuardianEvent(name: "internalError", id: "61e3c941009e8001875536e6ba9b6989", message: "internal error")

    /// All events, for the journald catalog and tests.
    public static let all: [GuardianEvent] = [
        .daemonStarted,
        .daemonReady,
        .daemonStopping,
        .daemonStopped,
        .configReloaded,
        .configReloadRefused,
        .databaseOpened,
        .databaseOpenFailed,
        .statusServerListening,
        .statusServerFailed,
        .watchdogEnabled,
        .replicaSynced,
        .replicaSyncFailed,
        .replicaRecovered,
        .replicaHistoryDiverged,
        .databaseReplaced,
        .snapshotWritten,
        .walGapDetected,
        .walRestarted,
        .checkpointDone,
        .checkpointFailed,
        .compactionDone,
        .retentionApplied,
        .restoreStarted,
        .restoreFinished,
        .restoreFailed,
        .diskLevelChanged,
        .diskActionTaken,
        .logRotated,
        .ballastReleased,
        .ballastRecreated,
        .integrityCheckFailed,
        .incidentOpened,
        .incidentStep,
        .incidentResolved,
        .incidentEscalated,
        .alertDelivered,
        .alertFailed,
        .drillPassed,
        .drillFailed,
        .internalError,
    ]
}
