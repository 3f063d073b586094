import Foundation
import Platform
import Testing

@testable import Remediate

/// `Alerter.finishAndDrain(limit:)`, the one end of an alerter's life used by
/// the daemon's `AlertService`, `DrillService` and `guardian drill`.
@Suite(.serialized) struct AlertDrainTests {
    func alerter(_ destination: String, retry: Alerter.RetryPolicy) -> Alerter {
        Alerter(
            destinations: [AlertConfig(kind: .webhook, url: Secret(destination), key: Secret("drain-key"))], transport: HTTPAlertTransport(),
            store: nil, logger: RecordingLog().logger(), host: "web-1", retry: retry)
    }

    @Test func drainsWhatIsQueuedThenStopsAccepting() async throws {
        let rx = try await WebhookReceiver(key: "drain-key")
        defer { rx.stop() }
        let a = alerter(rx.url("/hook"), retry: AlertDeliveryTests.fast)
        let delivery = Task { await a.run() }
        defer { delivery.cancel() }
        for n in 1...3 { await a.trigger(key: "k\(n)", severity: .critical, summary: "alert \(n)", database: nil) }
        let started = ContinuousClock.now
        #expect(await a.finishAndDrain(limit: .seconds(20)), "everything went out in time")
        #expect(ContinuousClock.now - started < .seconds(10), "returned when idle, not at the limit")
        #expect(rx.deliveries.count == 3, "delivered before it returned: \(rx.deliveries.count)")
        // Finished: run() ends, and what comes later is not sent.
        await delivery.value
        await a.trigger(key: "late", severity: .critical, summary: "late", database: nil)
        try await Task.sleep(for: .milliseconds(300))
        #expect(rx.deliveries.count == 3)
    }

    @Test func givesUpAtTheLimitWhenADestinationKeepsFailing() async throws {
        // Every attempt gets a 500; retries would go on for about a minute.
        let rx = try await WebhookReceiver(key: "drain-key", failFirst: 1000)
        defer { rx.stop() }
        let slow = Alerter.RetryPolicy(attempts: 30, firstDelay: .seconds(2), maxDelay: .seconds(2), timeout: .seconds(3))
        let a = alerter(rx.url("/hook"), retry: slow)
        let delivery = Task { await a.run() }
        await a.trigger(key: "k", severity: .critical, summary: "stuck", database: nil)
        let started = ContinuousClock.now
        #expect(await a.finishAndDrain(limit: .milliseconds(800)) == false, "not idle at the limit")
        let waited = ContinuousClock.now - started
        #expect(waited >= .milliseconds(700) && waited < .seconds(5), "returned at the limit: \(waited)")
        #expect(await rx.waitFor(1), "the delivery was attempted")
        delivery.cancel()
        await delivery.value

        // A cancelled caller does not wait for the limit.
        let b = alerter(rx.url("/hook"), retry: slow)
        let delivery2 = Task { await b.run() }
        await b.trigger(key: "k", severity: .critical, summary: "stuck", database: nil)
        let draining = Task { await b.finishAndDrain(limit: .seconds(60)) }
        try await Task.sleep(for: .milliseconds(200))
        let cancelledAt = ContinuousClock.now
        draining.cancel()
        #expect(await draining.value == false)
        #expect(ContinuousClock.now - cancelledAt < .seconds(2))
        delivery2.cancel()
        await delivery2.value
    }

    @Test func returnsAtOnceWithoutDestinations() async {
        let a = Alerter(destinations: [], transport: HTTPAlertTransport(), store: nil, logger: RecordingLog().logger())
        let delivery = Task { await a.run() }
        await a.trigger(key: "k", severity: .critical, summary: "nobody listens", database: nil)
        let started = ContinuousClock.now
        #expect(await a.finishAndDrain(limit: .seconds(30)))
        #expect(ContinuousClock.now - started < .seconds(1))
        await delivery.value
    }
}
