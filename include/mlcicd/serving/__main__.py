from mlcicd.serving.start import main

main()
