from mlcicd.serving.server import main

main()
