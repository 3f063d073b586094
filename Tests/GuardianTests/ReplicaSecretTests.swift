import Foundation
import Logging
import Platform
import Replication
import Testing

/// Secrets never reach errors or logs: failing runs against real servers
/// (refused signature, refused connection with retries, failed SSH login
/// with a password configured), with everything they produced — error
/// texts, debug descriptions, every log line with its metadata, and the
/// printed configuration values — searched for the secrets.
@Suite("Replica secrets")
struct ReplicaSecretTests {
    @Test("no secret in any error, log line or description from failing S3 and SFTP runs")
    func secretsNeverAppear() async throws {
        let (logger, lines) = CapturingLogHandler.logger()
        var produced: [String] = []
        func collect(_ error: any Error) {
            produced.append("\(error)")
            produced.append(String(reflecting: error))
            produced.append((error as? LocalizedError)?.errorDescription ?? "")
        }
        let options = RemoteClientOptions(
            retry: RetryPolicy(maxAttempts: 3, initialDelay: .milliseconds(20), maxDelay: .milliseconds(50)),
            connectTimeout: .seconds(2), stallTimeout: .seconds(5), logger: logger)

        // 1. Signature refused by moto enforcing SigV4.
        let moto = try await MotoServer.start(auth: true, buckets: ["secretbucket"])
        defer { moto.stop() }
        let wrongSecret = "WRONG-\(UUID().uuidString)-SECRET"
        var wrong = moto.location(bucket: "secretbucket", path: "db")
        wrong.secretAccessKey = Secret(wrongSecret)
        let s3 = try S3ReplicaClient(wrong, options: options)
        do { try await s3.writeFile(level: 0, minTXID: 1, maxTXID: 1, contents: .bytes([1]), createdAt: Date()) } catch { collect(error) }
        do { _ = try await s3.readFile(LTXFileInfo(level: 0, minTXID: 1, maxTXID: 1, size: 1, createdAt: Date())) } catch { collect(error) }
        produced += ["\(wrong)", String(reflecting: wrong), "\(ReplicaTarget.s3(wrong))", ReplicaTarget.s3(wrong).destination, String(reflecting: s3)]

        // 2. The right secret, a failing request (missing object).
        let right = try S3ReplicaClient(moto.location(bucket: "secretbucket", path: "db"), options: options)
        do { _ = try await right.readFile(LTXFileInfo(level: 0, minTXID: 9, maxTXID: 9, size: 1, createdAt: Date())) } catch { collect(error) }
        produced.append(String(reflecting: right))

        // 3. Connection refused, retried (retry notices are logged).
        let refusedSecret = "REFUSED-\(UUID().uuidString)-SECRET"
        let refused = S3Location(
            bucket: "b", path: "db", endpoint: "http://127.0.0.1:\(TestSupport.freePort())",
            accessKeyID: "AKIAREFUSED", secretAccessKey: Secret(refusedSecret))
        do { try await S3ReplicaClient(refused, options: options).writeFile(level: 0, minTXID: 1, maxTXID: 1, contents: .bytes([1]), createdAt: Date()) } catch { collect(error) }

        // 4. SFTP login refused while a password is configured.
        let ssh = try await SSHServer.start()
        defer { ssh.stop() }
        let password = "PASSWORD-\(UUID().uuidString)"
        let stranger = ssh.dir + "/stranger"
        try await ssh.keygen(stranger)
        var sftpLocation = ssh.location(keyPath: stranger)
        sftpLocation.password = Secret(password)
        let sftp = try SFTPReplicaClient(sftpLocation, options: options)
        do { _ = try await sftp.listFiles(level: 0, exactTimestamps: false) } catch { collect(error) }
        produced += ["\(sftpLocation)", String(reflecting: sftpLocation), ReplicaTarget.sftp(sftpLocation).destination]

        let everything = produced + lines.all
        #expect(produced.count > 10)
        #expect(lines.all.contains { $0.contains(GuardianEvent.replicaRequestRetrying.message) }, "the refused run logged its retries")
        #expect(everything.contains { $0.contains("SignatureDoesNotMatch") }, "the failing runs really failed")
        for secret in [wrongSecret, moto.secretAccessKey, refusedSecret, password] {
            let leaks = everything.filter { $0.contains(secret) }
            #expect(leaks.isEmpty, "secret found in: \(leaks.map { $0.replacingOccurrences(of: secret, with: "<SECRET>") })")
        }
    }
}
