"""Eureka-compatible REST adapter: Eureka clients register into (and discover from) the meshactors registry."""
