"""Read side: registrations (from the registry feed) in, one typed Snapshot per VIP out; and the VIP source the
xDS host serves those snapshots through. Speaks only the resource contract (meshactors.resources), never xds."""
