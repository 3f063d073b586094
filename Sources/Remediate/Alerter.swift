import Foundation
import Logging
import Platform

/// Sends one HTTP POST. The production transport is libcurl (Platform's
/// `HTTPClient`); the seam keeps the alert logic independent of it.
public protocol AlertTransport: Sendable {
    /// Returns the HTTP status; throws when no response came (refused, timeout, TLS).
    func post(_ request: AlertRequest, timeout: Duration) async throws -> Int
}

/// Delivers alerts to every configured destination.
///
/// - **Deduplication**: a trigger whose key is already triggered at the same
///   or a higher severity is not sent again; a higher severity is sent (it
///   updates the PagerDuty incident with the same `dedup_key`).
/// - **A resolve follows every trigger**: resolves are sent only for keys
///   that were triggered, and the triggered keys are kept in guardian's
///   state database, so the resolve still goes out after a restart.
/// - **Retries** with exponential backoff on network errors, 5xx and 429;
///   other 4xx are permanent. Each destination has its own ordered queue, so
///   a dead endpoint neither delays the others nor reorders trigger/resolve.
/// - **Secrets**: URLs and keys never appear in logs or records;
///   destinations are named `slack#0`, `pagerduty#1`, ... (or `name:`).
///
/// Delivery happens in `run()`, which the owning service runs as a child task.
public actor Alerter {
    public struct RetryPolicy: Sendable {
        public var attempts: Int
        public var firstDelay: Duration
        public var maxDelay: Duration
        public var timeout: Duration

        public init(attempts: Int = 5, firstDelay: Duration = .milliseconds(500), maxDelay: Duration = .seconds(8), timeout: Duration = .seconds(10)) {
            self.attempts = attempts
            self.firstDelay = firstDelay
            self.maxDelay = maxDelay
            self.timeout = timeout
        }

        public func delay(after attempt: Int) -> Duration {
            var d = firstDelay
            for _ in 1..<max(1, attempt) { d = min(maxDelay, d * 2) }
            return d
        }
    }

    struct Job: Sendable {
        var notice: AlertNotice
        var deliveryID: String
    }

    public nonisolated let destinations: [AlertConfig]
    public nonisolated let host: String
    let transport: any AlertTransport
    let store: StateStore?
    let logger: Logger
    let retry: RetryPolicy
    private var active: [String: StateStore.ActiveAlert] = [:]
    private var loaded = false
    private let queues: [AsyncStream<Job>]
    private let inputs: [AsyncStream<Job>.Continuation]
    private var inFlight = 0
    private var running = false
    private var idleWaiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
    private var nextWaiter: UInt64 = 0

    public init(
        destinations: [AlertConfig], transport: any AlertTransport, store: StateStore?, logger: Logger,
        host: String = Alerter.hostName(), retry: RetryPolicy = RetryPolicy()
    ) {
        self.destinations = destinations
        self.transport = transport
        self.store = store
        self.logger = logger
        self.host = host
        self.retry = retry
        var q: [AsyncStream<Job>] = []
        var c: [AsyncStream<Job>.Continuation] = []
        for _ in destinations {
            let (stream, continuation) = AsyncStream<Job>.makeStream()
            q.append(stream)
            c.append(continuation)
        }
        queues = q
        inputs = c
    }

    public static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count) == 0 else { return "localhost" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `guardian/<host>/<db or "host">/<kind>`: stable across restarts.
    public nonisolated func key(database: String?, kind: String) -> String {
        "guardian/\(host)/\(database ?? "host")/\(kind)"
    }

    nonisolated func label(_ index: Int) -> String {
        destinations[index].name ?? "\(destinations[index].kind.rawValue)#\(index)"
    }

    private func loadActive() async {
        guard !loaded else { return }
        loaded = true
        guard let store else { return }
        do {
            for a in try await store.activeAlerts() where active[a.key] == nil { active[a.key] = a }
        } catch {
            logger.event(.internalError, level: .warning, ["what": "reading triggered alerts", "error": "\(error)"])
        }
    }

    /// Raises an alert. Returns false when it was deduplicated.
    @discardableResult
    public func trigger(
        key: String, severity: AlertSeverity, summary: String, database: String?, incident: Int64? = nil,
        details: [String: String] = [:], at: Date = Date()
    ) async -> Bool {
        await loadActive()
        await syncWithStore(key)
        if let current = active[key], current.severity >= severity { return false }
        let entry = StateStore.ActiveAlert(key: key, database: database, severity: severity, summary: summary, triggeredAt: at)
        active[key] = entry
        try? await store?.setAlertActive(entry)
        enqueue(AlertNotice(action: .trigger, key: key, severity: severity, summary: summary, database: database, host: host, incident: incident, at: at, details: details))
        return true
    }

    /// Resolves an earlier trigger; does nothing when `key` is not triggered.
    @discardableResult
    public func resolve(key: String, summary: String? = nil, details: [String: String] = [:], at: Date = Date()) async -> Bool {
        await loadActive()
        await syncWithStore(key)
        guard let current = active.removeValue(forKey: key) else { return false }
        try? await store?.clearAlert(key: key)
        enqueue(AlertNotice(
            action: .resolve, key: key, severity: current.severity, summary: summary ?? current.summary, database: current.database,
            host: host, at: at, details: details))
        return true
    }

    /// Another guardian process (`guardian drill` beside the daemon) may have
    /// triggered or resolved `key` since this alerter loaded the state
    /// database: the store is the record; memory follows it for this key.
    private func syncWithStore(_ key: String) async {
        guard let store else { return }
        do {
            active[key] = try await store.activeAlert(key: key)
        } catch {
            // Unreadable state database: keep what memory says.
        }
    }

    public func isTriggered(_ key: String) async -> Bool {
        await loadActive()
        return active[key] != nil
    }

    /// Keys triggered for `database` (to resolve what no longer holds after a restart).
    public func triggeredKeys(database: String?) async -> [String] {
        await loadActive()
        return active.values.filter { $0.database == database }.map(\.key).sorted()
    }

    private func enqueue(_ notice: AlertNotice) {
        let id = UUID().uuidString.lowercased()
        for (i, d) in destinations.enumerated() where notice.severity >= (AlertSeverity(rawValue: d.minSeverity) ?? .warning) {
            inFlight += 1
            if case .terminated = inputs[i].yield(Job(notice: notice, deliveryID: id)) {
                inFlight -= 1
                logger.event(.alertFailed, level: .error, ["destination": "\(label(i))", "key": "\(notice.key)", "error": "guardian is stopping"])
            }
        }
    }

    /// Delivers queued alerts until `finish()` (then drains) or cancellation.
    /// Runs once per alerter (a second call returns at once).
    public func run() async {
        guard !running else { return }
        running = true
        await withDiscardingTaskGroup { group in
            for (i, queue) in queues.enumerated() {
                group.addTask { [self] in
                    for await job in queue {
                        await self.deliver(job, to: i)
                    }
                }
            }
        }
    }

    /// No new alerts are accepted; `run()` returns once the queues are empty.
    public func finish() {
        for c in inputs { c.finish() }
    }

    /// Waits until every queued alert was delivered or given up.
    /// Waits until every queued alert was delivered or given up (or the
    /// calling task is cancelled).
    public func waitUntilIdle() async {
        if inFlight == 0 { return }
        nextWaiter += 1
        let id = nextWaiter
        await withTaskCancellationHandler {
            await withCheckedContinuation { c in
                if Task.isCancelled {
                    c.resume()
                } else {
                    idleWaiters[id] = c
                }
            }
        } onCancel: {
            Task { await self.stopWaiting(id) }
        }
    }

    private func stopWaiting(_ id: UInt64) {
        idleWaiters.removeValue(forKey: id)?.resume()
    }

    private func done() {
        inFlight -= 1
        if inFlight == 0 {
            for w in idleWaiters.values { w.resume() }
            idleWaiters.removeAll()
        }
    }

    private func deliver(_ job: Job, to index: Int) async {
        defer { done() }
        let destination = destinations[index]
        let name = label(index)
        let request = AlertPayloads.request(for: job.notice, to: destination, deliveryID: job.deliveryID)
        var attempt = 0
        var lastError = ""
        while attempt < max(1, retry.attempts) {
            attempt += 1
            do {
                let status = try await transport.post(request, timeout: retry.timeout)
                if (200..<300).contains(status) {
                    logger.event(.alertDelivered, [
                        "destination": "\(name)", "key": "\(job.notice.key)", "action": "\(job.notice.action.rawValue)",
                        "severity": "\(job.notice.severity.rawValue)", "attempts": "\(attempt)", "http_status": "\(status)",
                    ])
                    try? await store?.recordDelivery(key: job.notice.key, action: job.notice.action.rawValue, destination: name, status: "delivered", attempts: attempt, detail: "HTTP \(status)")
                    return
                }
                lastError = "HTTP \(status)"
                if status != 429, status < 500 { break }  // permanent: the request itself is wrong
            } catch {
                // Every value of the destination's own secrets, however short.
                lastError = Redactor(alert: destination, shortest: 1).apply("\(error)")
            }
            if Task.isCancelled { break }
            if attempt < retry.attempts {
                try? await Task.sleep(for: retry.delay(after: attempt))
            }
        }
        logger.event(.alertFailed, level: .error, [
            "destination": "\(name)", "key": "\(job.notice.key)", "action": "\(job.notice.action.rawValue)",
            "attempts": "\(attempt)", "error": "\(lastError)",
        ])
        try? await store?.recordDelivery(key: job.notice.key, action: job.notice.action.rawValue, destination: name, status: "failed", attempts: attempt, detail: lastError)
    }
}
