import Platform

/// Disk guardian settings (`disk:` in the configuration).
public struct DiskConfig: Sendable, Equatable {
    /// How often every watched mount is sampled.
    public var interval: Duration
    /// Usage levels in percent (of bytes or inodes, whichever is higher).
    public var warn: Double
    public var critical: Double
    public var emergency: Double
    /// A level is left only once usage falls this many points below it.
    public var hysteresis: Double
    /// Extra paths whose mounts are watched (the databases' and replicas' are added automatically).
    public var paths: [String]
    public var ballast: BallastConfig?
    public var logs: [LogRotationConfig]
    public var cleanup: [CleanupRule]
    /// How often the rotation criteria (size, hourly/daily/...) of every log are checked.
    public var rotateInterval: Duration
    /// The span of recent samples the time-to-full forecast is fitted to.
    public var forecastWindow: Duration
    /// A forecast to full shorter than this is logged (once, until it recovers).
    public var forecastWarning: Duration
    /// Under pressure, a log is rotated ahead of its schedule only when at
    /// least this big; nil means 1 % of its filesystem (at least 64 KiB).
    public var pressureMinSize: Int64?
    /// At the emergency level, once everything else is done, delete rotated
    /// logs oldest first (keeping the newest one of each log).
    public var emergencyDeleteArchives: Bool
    /// A forecast to full shorter than this escalates like a level: the warn
    /// ladder (rotate and compress now) when below it, the critical ladder
    /// when below a tenth of it. Zero turns the forecast's escalation off.
    public var forecastHorizon: Duration
    /// Bytes the databases need free on their filesystem (the WAL growing to
    /// its `max-wal-size` and a checkpoint copying it into the database);
    /// given by the wiring in `guardian` (DiskWatch does not know the
    /// replication settings). `guardian doctor` compares it with the free
    /// space below the emergency level and with the ballast.
    public var databaseHeadroom: Int64
    /// What cleanup never deletes (quarantine, replicas, drill scratch,
    /// restored copies; the state directory is always added): filled in
    /// from the rest of the configuration, not a `disk:` key.
    public var kept = KeptPaths()

    public init(
        interval: Duration = .seconds(1), warn: Double = 80, critical: Double = 90, emergency: Double = 95,
        hysteresis: Double = 2, paths: [String] = [], ballast: BallastConfig? = nil,
        logs: [LogRotationConfig] = [], cleanup: [CleanupRule] = [],
        rotateInterval: Duration = .seconds(60), forecastWindow: Duration = .seconds(300),
        forecastWarning: Duration = .seconds(3600), pressureMinSize: Int64? = nil,
        emergencyDeleteArchives: Bool = true, forecastHorizon: Duration = .seconds(600), databaseHeadroom: Int64 = 0
    ) {
        self.forecastHorizon = forecastHorizon
        self.databaseHeadroom = databaseHeadroom
        self.interval = interval
        self.warn = warn
        self.critical = critical
        self.emergency = emergency
        self.hysteresis = hysteresis
        self.paths = paths
        self.ballast = ballast
        self.logs = logs
        self.cleanup = cleanup
        self.rotateInterval = rotateInterval
        self.forecastWindow = forecastWindow
        self.forecastWarning = forecastWarning
        self.pressureMinSize = pressureMinSize
        self.emergencyDeleteArchives = emergencyDeleteArchives
    }
}

/// A pre-allocated file released in an emergency to buy time.
public struct BallastConfig: Sendable, Equatable {
    public var path: String
    public var size: Int64

    public init(path: String, size: Int64) {
        self.path = path
        self.size = size
    }
}

/// logrotate-style rotation of a set of log files.
public struct LogRotationConfig: Sendable, Equatable {
    public enum Frequency: String, Sendable, CaseIterable { case hourly, daily, weekly, monthly }

    public var paths: [String]
    public var rotate: Int
    public var size: Int64?
    public var minSize: Int64?
    public var maxSize: Int64?
    public var maxAge: Duration?
    public var frequency: Frequency?
    public var compress: Bool
    public var delayCompress: Bool
    public var dateExt: Bool
    public var missingOK: Bool
    public var notIfEmpty: Bool
    public var copyTruncate: Bool
    /// Rotate a log that has other hard links (logrotate's `allowhardlink`);
    /// by default such a log is skipped with a warning.
    public var allowHardLink = false
    /// `su` names a user (`suUser`): rotating in a directory writable by all
    /// or by a non-root group is then allowed, which is otherwise refused
    /// like logrotate does. Setting it true means `su: root root`.
    public var suRoot: Bool {
        get { suUser != nil }
        set {
            suUser = newValue ? "root" : nil
            suGroup = newValue ? "root" : nil
        }
    }
    /// Without copytruncate: create a new, empty log after moving the old one
    /// away (logrotate's `create`); `create: no` leaves that to the writer.
    public var create: Bool
    /// `create MODE OWNER GROUP`; nil mode keeps the old file's mode.
    public var createMode: UInt16?
    public var createOwner: String?
    public var createGroup: String?
    /// Run after rotation (`postrotate`): an argv without a shell, or shell
    /// text (see `RotationScript`). Its timeout is that of every script.
    public var postRotate: RotationScript?
    public var postRotateTimeout: Duration
    /// The last resort before the database meets a full disk.
    public var emergencyTruncate: EmergencyTruncate

    // logrotate 3.21 directives (issue 15). Each field's semantics are
    // logrotate's; `rotate` may be -1 (keep every archive, logrotate's
    // `rotate -1`).

    /// `dateformat` (strftime subset %Y %m %d %H %M %S %s %V; default
    /// logrotate's "-%Y%m%d", "-%Y%m%d%H" when hourly).
    public var dateFormat: String?
    /// `dateyesterday`: the date in archive names is yesterday's.
    public var dateYesterday = false
    /// `olddir`: archives go here (absolute, or relative to the log's directory).
    public var oldDir: String?
    /// `createolddir MODE OWNER GROUP`: create `olddir` when missing (nil: do not).
    public var createOldDir: FileCreation?
    /// `start`: the first archive number (default 1).
    public var start = 1
    /// `extension`: kept at the end of archive names (`app.1.log`).
    public var fileExtension: String?
    /// `minage`: a log last modified less than this long ago is not rotated (logrotate compares its mtime).
    public var minAge: Duration?
    /// `copy`: copy the log and leave the original untouched (no truncate, no create).
    public var copy = false
    /// `prerotate`, `firstaction`, `lastaction` (postrotate is `postRotate`).
    public var preRotate: RotationScript?
    public var firstAction: RotationScript?
    public var lastAction: RotationScript?
    /// `sharedscripts` (guardian's default, scripts once per rule) or
    /// `nosharedscripts` (false: pre/postrotate once per rotated log, with that log as $1).
    public var sharedScripts = true
    /// `$1` of shared scripts: a logrotate stanza's path list as written
    /// before its `{` (set by the logrotate import, so a script sees what it
    /// saw under logrotate); nil: the paths joined by spaces, then a space.
    public var scriptPattern: String?
    /// `compresscmd`, `compressoptions`, `compressext` (nil: the built-in gzip, ".gz").
    public var compressCommand: String?
    public var compressOptions: [String]?
    public var compressExt: String?
    /// `su USER GROUP`: rotate as this user and group (nil: as guardian runs).
    public var suUser: String?
    public var suGroup: String?

    /// A script of a rotation hook: an argv run without a shell (guardian's
    /// YAML list form), or shell text run by `/bin/sh -c` with the log path
    /// (or the rule's patterns, with sharedscripts) as `$1`, like logrotate.
    public enum RotationScript: Sendable, Equatable, ExpressibleByArrayLiteral {
        case argv([String])
        case shell(String)

        public init(arrayLiteral elements: String...) { self = .argv(elements) }

        /// For logs and `guardian rotate`: the argv joined, or the shell
        /// text's first line (shortened).
        public var summary: String {
            switch self {
            case .argv(let argv): return argv.joined(separator: " ")
            case .shell(let text):
                let line = text.split(separator: "\n", omittingEmptySubsequences: true).first.map { String($0.drop { $0 == " " || $0 == "\t" }) } ?? ""
                let short = line.count > 80 ? String(line.prefix(77)) + "..." : line
                return "sh -c \(short.debugDescription)"
            }
        }

        /// The argv to run: the list as it is, or
        /// `/bin/sh -c TEXT logrotate_script ARGS...` like logrotate (so
        /// `$1` is the log path or the rule's patterns, `$2` the archive).
        public func argv(arguments: [String]) -> [String] {
            switch self {
            case .argv(let argv): return argv
            case .shell(let text): return ["/bin/sh", "-c", text, "logrotate_script"] + arguments
            }
        }
    }

    /// `create`/`createolddir`-style attributes for a new file or directory.
    public struct FileCreation: Sendable, Equatable {
        public var mode: UInt16?
        public var owner: String?
        public var group: String?
        public init(mode: UInt16? = nil, owner: String? = nil, group: String? = nil) {
            self.mode = mode
            self.owner = owner
            self.group = group
        }
    }

    /// `emergency-truncate:` of a log rule. At the emergency level, once
    /// deletions allowed by policy did not suffice, the fastest-growing log
    /// is truncated keeping its last `keep` bytes (from a line start); the
    /// bytes dropped are reported in an alert. Log lines are cheaper than the
    /// database.
    public enum EmergencyTruncate: Sendable, Equatable {
        /// `keep 1MB` for logs on a database's filesystem; off elsewhere.
        case automatic
        /// `keep SIZE`: on any filesystem.
        case keep(Int64)
        /// `off`: never.
        case off

        public static let defaultKeep: Int64 = 1 << 20

        /// The bytes to keep, or nil when the log may not be truncated.
        public func keep(onDatabaseFilesystem: Bool) -> Int64? {
            switch self {
            case .automatic: onDatabaseFilesystem ? Self.defaultKeep : nil
            case .keep(let n): n
            case .off: nil
            }
        }
    }

    public init(
        paths: [String], rotate: Int = 7, size: Int64? = nil, minSize: Int64? = nil, maxSize: Int64? = nil,
        maxAge: Duration? = nil, frequency: Frequency? = nil, compress: Bool = false, delayCompress: Bool = false,
        dateExt: Bool = false, missingOK: Bool = false, notIfEmpty: Bool = false, copyTruncate: Bool = false,
        createMode: UInt16? = nil, createOwner: String? = nil, createGroup: String? = nil,
        postRotate: RotationScript? = nil, postRotateTimeout: Duration = .seconds(30), create: Bool = true,
        emergencyTruncate: EmergencyTruncate = .automatic
    ) {
        self.emergencyTruncate = emergencyTruncate
        self.paths = paths
        self.rotate = rotate
        self.size = size
        self.minSize = minSize
        self.maxSize = maxSize
        self.maxAge = maxAge
        self.frequency = frequency
        self.compress = compress
        self.delayCompress = delayCompress
        self.dateExt = dateExt
        self.missingOK = missingOK
        self.notIfEmpty = notIfEmpty
        self.copyTruncate = copyTruncate
        self.createMode = createMode
        self.createOwner = createOwner
        self.createGroup = createGroup
        self.postRotate = postRotate
        self.postRotateTimeout = postRotateTimeout
        self.create = create
    }
}

/// Files under `path` older than `maxAge` may be deleted at the critical level.
public struct CleanupRule: Sendable, Equatable {
    public var path: String
    /// A shell-style pattern (fnmatch) the file name must match; nil matches all.
    public var pattern: String?
    public var maxAge: Duration
    /// Also look into subdirectories (never through symbolic links, never
    /// onto another filesystem).
    public var recursive: Bool

    public init(path: String, pattern: String? = nil, maxAge: Duration, recursive: Bool = false) {
        self.path = path
        self.pattern = pattern
        self.maxAge = maxAge
        self.recursive = recursive
    }
}
