import Foundation
import Logging
import Platform

// Events of the disk guardian beyond the ones in Platform's Events.swift
// (diskLevelChanged, diskActionTaken, logRotated, ballastReleased,
// ballastRecreated). To be listed in `GuardianEvent.all`.
extension GuardianEvent {
    public static let logCompressed = GuardianEvent(name: "logCompressed", id: "3e955edb7cbf9d7b2a010f1b647df2d8", message: "rotated log compressed")
    public static let logCompressPostponed = GuardianEvent(name: "logCompressPostponed", id: "899f3d8f2f26d77694adb5f98a22abc6", message: "rotated log is still open by a writer; compression postponed")
    public static let logRotationFailed = GuardianEvent(name: "logRotationFailed", id: "3c6168c05874b393980df1375b06d003", message: "log rotation failed")
    public static let logGlobNoMatch = GuardianEvent(name: "logGlobNoMatch", id: "af71f6368374cd6075ea8680d29a7f0c", message: "log path matched no file")
    public static let postRotateFailed = GuardianEvent(name: "postRotateFailed", id: "5684d0dc7fea86a106790dd6db50003c", message: "postrotate command failed")
    public static let rotationScriptFailed = GuardianEvent(name: "rotationScriptFailed", id: "e3a7c51f0b9d4e28a6f1c7d20b85e94a", message: "prerotate, firstaction or lastaction script failed")
    public static let diskFileDeleted = GuardianEvent(name: "diskFileDeleted", id: "5ba6f2d33d74630624c140d6f5e20900", message: "file deleted to free disk space")
    public static let diskPathRefused = GuardianEvent(name: "diskPathRefused", id: "1da442ccf8f597bb1b691ba73333f6e1", message: "path refused: protected, a symbolic link, or outside the configured paths")
    public static let ballastCreateFailed = GuardianEvent(name: "ballastCreateFailed", id: "bcba443ad4976c552a5b9194262edb03", message: "ballast file could not be created")
    public static let diskSampleFailed = GuardianEvent(name: "diskSampleFailed", id: "0d6309bbe9bc84a151c0e3423c286cca", message: "disk usage could not be read")
    public static let diskCleanupFinished = GuardianEvent(name: "diskCleanupFinished", id: "59fe62180fe9ac0821a5f290d47a38b7", message: "disk cleanup finished")
    public static let diskCleanupInsufficient = GuardianEvent(name: "diskCleanupInsufficient", id: "fef9ec45bded0324d53916791e18d468", message: "disk cleanup could not bring usage below the level")
    public static let diskFillForecast = GuardianEvent(name: "diskFillForecast", id: "7c86b81c2928ab0e16fa4dd635d5cf23", message: "disk is forecast to fill up soon")
    public static let diskFillForecastCleared = GuardianEvent(name: "diskFillForecastCleared", id: "637871687318d75c1e47bb732474525c", message: "disk is no longer forecast to fill up soon")
    public static let rotationStateFailed = GuardianEvent(name: "rotationStateFailed", id: "77bc2c4b963b559bded5c2dbd65bdf7d", message: "log rotation state could not be read or saved")
    public static let logEmergencyTruncated = GuardianEvent(name: "logEmergencyTruncated", id: "b5d0c8f1e27a4c3e9a61f4d2c7e08b93", message: "log truncated to its tail to keep the database writable")
    public static let logRotationSkipped = GuardianEvent(name: "logRotationSkipped", id: "4b7e2a91c0d35f68a1e9b2c7d4f06a13", message: "log not rotated: it has other hard links")
    public static let archiveMovedAside = GuardianEvent(name: "archiveMovedAside", id: "9d1c6e3f72a84b05b8e4a7c2f1d93e60", message: "file in the way of a compressed archive moved aside")
    public static let diskConfigProblem = GuardianEvent(name: "diskConfigProblem", id: "c188e6694db853cf7c91e923c6d7d0d3", message: "disk guard configuration problem")

    /// The events this module declares (the catalog needs them too).
    public static let diskWatchEvents: [GuardianEvent] = [
        .logCompressed, .logCompressPostponed, .logRotationFailed, .logGlobNoMatch, .postRotateFailed,
        .diskFileDeleted, .diskPathRefused, .ballastCreateFailed, .diskSampleFailed, .diskCleanupFinished,
        .diskCleanupInsufficient, .diskFillForecast, .diskFillForecastCleared, .rotationStateFailed, .diskConfigProblem,
        .logEmergencyTruncated, .logRotationSkipped, .archiveMovedAside, .rotationScriptFailed,
    ]
}

/// One thing the disk guardian noticed or did: a threshold crossing, an
/// action, bytes freed, a refusal. Logged (journald fields `GUARDIAN_<KEY>`)
/// and handed to `onEvent` for alerts and the incident timeline.
public struct DiskEvent: Sendable, Equatable, CustomStringConvertible {
    public var event: GuardianEvent
    public var level: Logger.Level
    /// Structured details: `mount`, `path`, `level`, `bytes_freed`, `error`, ...
    public var metadata: [String: String]
    public var time: Date

    public init(_ event: GuardianEvent, level: Logger.Level = .info, _ metadata: [String: String] = [:], time: Date = Date()) {
        self.event = event
        self.level = level
        self.metadata = metadata
        self.time = time
    }

    /// Bytes this event gave back to its filesystem (0 when none).
    public var bytesFreed: Int64 { metadata["bytes_freed"].flatMap { Int64($0) } ?? 0 }

    public var description: String {
        let details = metadata.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        return details.isEmpty ? event.message : "\(event.message) \(details)"
    }

    func log(to logger: Logger) {
        logger.event(event, level: level, metadata.mapValues { .string($0) })
    }
}
