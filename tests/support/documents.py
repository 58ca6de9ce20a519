"""Distinct small documents for end-to-end tests, with a paraphrased query for each."""

DOCUMENTS = {
    "panda.md": (
        "# Giant panda\n\nThe giant panda is a bear species endemic to China. Bamboo makes up almost "
        "all of its diet, and an adult eats up to 38 kilograms of bamboo shoots and leaves a day.\n"
    ),
    "volcano.txt": (
        "Volcanoes erupt when magma rises from the mantle and dissolved gases form bubbles that raise "
        "the pressure until the rock above breaks and lava and ash are thrown out.\n"
    ),
    "coffee.txt": (
        "To brew pour-over coffee, grind the beans medium-fine, use about one gram of coffee for "
        "sixteen grams of water heated to 94 degrees, and pour slowly for three minutes.\n"
    ),
    "tower.html": (
        "<html><head><title>Eiffel Tower</title><script>var tracking = 1;</script></head><body>"
        "<nav>Home | About</nav><main><h1>Eiffel Tower</h1><p>The Eiffel Tower is a wrought-iron "
        "lattice tower in Paris, 330 metres tall, built by Gustave Eiffel's company for the 1889 "
        "World's Fair.</p></main><footer>cookie banner</footer></body></html>"
    ),
    "gil.md": (
        "# Python threads\n\nCPython's global interpreter lock lets only one thread run Python bytecode "
        "at a time, so CPU-bound threads do not use several cores in parallel.\n"
    ),
}

PARAPHRASES = {
    "panda.md": "What food does the black and white bear from China live on?",
    "volcano.txt": "why does molten rock burst out of a mountain",
    "coffee.txt": "how much ground coffee per water for a filter brew",
    "tower.html": "how high is the famous iron landmark in Paris",
    "gil.md": "why can't python threads run in parallel on multiple CPU cores",
}
