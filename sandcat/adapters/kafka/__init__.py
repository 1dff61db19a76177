"""Kafka (aiokafka): the durable message queue between gateways/API and msg-servers."""
