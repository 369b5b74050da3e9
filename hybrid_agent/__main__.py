from hybrid_agent.cli import main

main()
