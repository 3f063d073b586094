import CoreMetrics
import Foundation
import Prometheus

/// Records guardian's metrics through swift-metrics (`CoreMetrics.Gauge` and
/// `CoreMetrics.Counter`, created with an explicit factory rather than the
/// process-wide bootstrap) into a swift-prometheus registry, and renders it in
/// the Prometheus text format for `GET /metrics`.
///
/// guardian's figures live in its status snapshot; each scrape records the
/// snapshot's values (gauges are set, counters are advanced by what they grew
/// since the last scrape, and started over when the snapshot's count went
/// down, e.g. after a reload), and a series the snapshot no longer has (a
/// database removed by a reload, a value that became unknown) is destroyed,
/// so no stale figure is ever served. One pipeline per metrics endpoint;
/// scrapes take turns.
final class MetricsPipeline: @unchecked Sendable {
    private struct SeriesKey: Hashable {
        let name: String
        let labels: [String]
    }

    private enum Series {
        case gauge(CoreMetrics.Gauge)
        case counter(CoreMetrics.Counter, value: Int64)
    }

    let registry = PrometheusCollectorRegistry()
    private let factory: HelpfulFactory
    private let lock = NSLock()
    private var series: [SeriesKey: Series] = [:]

    init() {
        factory = HelpfulFactory(registry: registry)
    }

    /// Records `samples` and returns the registry in the text format.
    func render(_ samples: MetricSamples) -> String {
        lock.withLock {
            var seen: Set<SeriesKey> = []
            for family in samples.families {
                factory.setHelp(family.help, for: family.name)
                for sample in family.samples {
                    let key = SeriesKey(name: family.name, labels: sample.labels.flatMap { [$0.0, $0.1] })
                    seen.insert(key)
                    record(key, family.kind, sample.labels, sample.value)
                }
            }
            for (key, s) in series where !seen.contains(key) {
                destroy(s)
                series[key] = nil
            }
            return registry.emitToString()
        }
    }

    private func record(_ key: SeriesKey, _ kind: MetricSamples.Kind, _ labels: [(String, String)], _ value: Double) {
        switch (kind, series[key]) {
        case (.gauge, .gauge(let g)):
            g.record(value)
        case (.gauge, _):
            let g = CoreMetrics.Gauge(label: key.name, dimensions: labels, factory: factory)
            g.record(value)
            series[key] = .gauge(g)
        case (.counter, .counter(let c, let last)) where Int64(value) >= last:
            if Int64(value) > last { c.increment(by: Int64(value) - last) }
            series[key] = .counter(c, value: Int64(value))
        case (.counter, let old):
            // New, or counting from zero again: a fresh series.
            if let old { destroy(old) }
            let c = CoreMetrics.Counter(label: key.name, dimensions: labels, factory: factory)
            if value > 0 { c.increment(by: Int64(value)) }
            series[key] = .counter(c, value: Int64(value))
        }
    }

    private func destroy(_ s: Series) {
        switch s {
        case .gauge(let g): g.destroy()
        case .counter(let c, _): c.destroy()
        }
    }
}

/// swift-prometheus's factory, with each family's help text (its own factory
/// leaves `# HELP` out).
private final class HelpfulFactory: MetricsFactory, @unchecked Sendable {
    let registry: PrometheusCollectorRegistry
    private let plain: PrometheusMetricsFactory
    private var help: [String: String] = [:]

    init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
        plain = PrometheusMetricsFactory(registry: registry)
    }

    /// Called under the pipeline's lock, before the family's metrics are made.
    func setHelp(_ text: String, for name: String) { help[name] = text }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        registry.makeCounter(name: label, labels: dimensions, help: help[label] ?? "")
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        guard !aggregate else { return plain.makeRecorder(label: label, dimensions: dimensions, aggregate: aggregate) }
        return registry.makeGauge(name: label, labels: dimensions, help: help[label] ?? "")
    }

    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        plain.makeFloatingPointCounter(label: label, dimensions: dimensions)
    }

    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        plain.makeMeter(label: label, dimensions: dimensions)
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        plain.makeTimer(label: label, dimensions: dimensions)
    }

    func destroyCounter(_ handler: any CounterHandler) { plain.destroyCounter(handler) }
    func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) { plain.destroyFloatingPointCounter(handler) }
    func destroyRecorder(_ handler: any RecorderHandler) { plain.destroyRecorder(handler) }
    func destroyMeter(_ handler: any MeterHandler) { plain.destroyMeter(handler) }
    func destroyTimer(_ handler: any TimerHandler) { plain.destroyTimer(handler) }
}
