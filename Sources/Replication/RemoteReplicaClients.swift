extension ReplicaClients {
    /// S3 and SFTP clients arrive with the S3/SFTP issue.
    static func makeRemote(_ target: ReplicaTarget) throws -> any ReplicaClient {
        throw ReplicaError(.permanent, "\(target.typeName) replicas are not built yet (see README: Status of the work)")
    }
}
