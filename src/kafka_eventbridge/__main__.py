from kafka_eventbridge.cli import main

main()
