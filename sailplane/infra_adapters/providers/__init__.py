"""Provider adapters that run on this host (`local`); the port they implement is
`sailplane.commands.ports.Provider`."""
