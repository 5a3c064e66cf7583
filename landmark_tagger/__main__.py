from landmark_tagger._entry import main

if __name__ == "__main__":
    main()
