import Platform

/// Events of the Prometheus metrics endpoint (listed in `everyKind`).
extension GuardianEvent {
    static let metricsServerListening = GuardianEvent(
        name: "metricsServerListening", id: "2df0f21cc48442d0ab577c938727b1b7", message: "metrics endpoint listening")
    static let metricsServerFailed = GuardianEvent(
        name: "metricsServerFailed", id: "06bec98fa32d45de9cde0111695fcbfc", message: "metrics endpoint failed")

    static let metricsEvents: [GuardianEvent] = [.metricsServerListening, .metricsServerFailed]
}
